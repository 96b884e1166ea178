"""Results tables, metrics, plot data and the paper's figures, written by the aggregate stage.

The names below are the aggregate stage's outputs (``results/plots/<name>.csv``,
``results/figures/<name>.png``); the stage table (microai.pipeline) declares them.
"""

#: Plot data (CSV, kept in git so that ``dvc plots diff`` compares them across commits).
PLOT_DATA = ("accuracy_vs_filters", "accuracy_vs_param_kib", "deployment_at_max_filters",
             "deployment_vs_filters")
#: The paper's figures: 5/7/9, 6/8/10, 11-13 and Tables A3-A5 as plots.
FIGURES = ("accuracy_vs_filters", "accuracy_vs_param_memory", "rom_at_max_filters", "time_at_max_filters",
           "energy_at_max_filters", "rom_vs_filters", "time_vs_filters", "energy_vs_filters")
