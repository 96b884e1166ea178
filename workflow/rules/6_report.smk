# Generated from the stage table (microai/pipeline.py) by `make workflow-files`: edit the table, not here.
# 6. report: the sweep's results into tables, metrics, plot data and the paper's figures.


rule aggregate:
    """every result of the sweep into the tables, metrics, plot data and the paper's figures"""
    input:
        runs=lambda wildcards: pipeline.sweep_results(config),
        code=stage_code("aggregate"),
    output:
        table=report(
            "results/tables.csv",
            caption=caption("tables"), category="Tables",
        ),
        paper=report(
            "results/paper_tables.csv",
            caption=caption("paper_tables"), category="Tables",
        ),
        metrics="results/metrics.json",
        provenance="results/provenance.json",
        plot_accuracy_vs_filters="results/plots/accuracy_vs_filters.csv",
        plot_accuracy_vs_param_kib="results/plots/accuracy_vs_param_kib.csv",
        plot_deployment_at_max_filters="results/plots/deployment_at_max_filters.csv",
        plot_deployment_vs_filters="results/plots/deployment_vs_filters.csv",
        figure_accuracy_vs_filters=report(
            "results/figures/accuracy_vs_filters.png",
            caption=caption("accuracy_vs_filters"), category="Figures", subcategory="Accuracy",
        ),
        figure_accuracy_vs_param_memory=report(
            "results/figures/accuracy_vs_param_memory.png",
            caption=caption("accuracy_vs_param_memory"), category="Figures", subcategory="Accuracy",
        ),
        figure_rom_at_max_filters=report(
            "results/figures/rom_at_max_filters.png",
            caption=caption("rom_at_max_filters"), category="Figures", subcategory="Deployment",
        ),
        figure_time_at_max_filters=report(
            "results/figures/time_at_max_filters.png",
            caption=caption("time_at_max_filters"), category="Figures", subcategory="Deployment",
        ),
        figure_energy_at_max_filters=report(
            "results/figures/energy_at_max_filters.png",
            caption=caption("energy_at_max_filters"), category="Figures", subcategory="Deployment",
        ),
        figure_rom_vs_filters=report(
            "results/figures/rom_vs_filters.png",
            caption=caption("rom_vs_filters"), category="Figures", subcategory="Deployment",
        ),
        figure_time_vs_filters=report(
            "results/figures/time_vs_filters.png",
            caption=caption("time_vs_filters"), category="Figures", subcategory="Deployment",
        ),
        figure_energy_vs_filters=report(
            "results/figures/energy_vs_filters.png",
            caption=caption("energy_vs_filters"), category="Figures", subcategory="Deployment",
        ),
    params:
        sweep=stage_param("sweep"),
        deploy_runs=stage_param("deploy.runs"),
        tflm_tree=environment_fact("tflm_tree"),
    localrule: True
    log:
        "logs/aggregate.log",
    shell:
        "{PYTHON} {SCRIPTS}/aggregate.py --params {PARAMS_FILE}"
        " --runs results/runs"
        " --out-dir results"
        " 2> {log}"
