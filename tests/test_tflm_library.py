"""The TFLM library build and its content-keyed cache, on a two-file stand-in tree (seconds, not minutes)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from test_deploy_support import needs_arm_gcc

from microai.deploy.errors import BuildError
from microai.deploy.tflm.library import PRECOMPILED, TflmLibrary, build_library, library_key
from microai.deploy.tflm.tree import REQUIRED_FILES, load_tree

pytestmark = needs_arm_gcc


def standin_tree(root: Path, value: int = 1) -> Path:
    """A tree with the required headers (empty) and two sources, one C++ and one C."""
    for name in (*REQUIRED_FILES, PRECOMPILED):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("#pragma once\n")
    source = f'#include "{PRECOMPILED}"\nint a() {{ return {value}; }}\n'
    (root / "tensorflow/lite/micro/a.cc").write_text(source)
    (root / "third_party/cmsis_nn/b.c").write_text("int b(int x) { return 2 * x; }\n")
    (root / "sources.txt").write_text("tensorflow/lite/micro/a.cc\nthird_party/cmsis_nn/b.c\n")
    (root / "flags.txt").write_text("# stand-in\nINCLUDES=-I.\nDEFINES=-DSTANDIN\n")
    return root


def test_built_once_then_taken_from_the_cache(tmp_path) -> None:
    tree = load_tree(standin_tree(tmp_path / "tree"))
    first = build_library(tree, "-O2", cache_dir=tmp_path / "cache")
    members = subprocess.run(["arm-none-eabi-ar", "t", first.archive], capture_output=True, text=True).stdout
    assert members.split() == ["tensorflow__lite__micro__a.cc.o", "third_party__cmsis_nn__b.c.o"]
    assert first.jobs >= 1 and first.build_seconds >= 0
    assert "-O2" in first.cxx_flags and f"-I{tree.root}" in first.cxx_flags and "-DSTANDIN" in first.cxx_flags
    stamp = Path(first.archive).stat().st_mtime_ns
    again = build_library(tree, "-O2", cache_dir=tmp_path / "cache")
    assert again == first and Path(again.archive).stat().st_mtime_ns == stamp
    assert TflmLibrary.of(Path(first.archive), first.key, tree, "-O2").cxx_flags == first.cxx_flags
    with pytest.raises(BuildError, match="another TFLite Micro tree, compiler or flags"):
        TflmLibrary.of(Path(first.archive), first.key, tree, "-Os")


def test_key_follows_content_flags_and_not_location(tmp_path) -> None:
    tree = load_tree(standin_tree(tmp_path / "a"))
    moved = load_tree(standin_tree(tmp_path / "b"))
    changed = load_tree(standin_tree(tmp_path / "c", value=2))
    assert library_key(tree, "-O2") == library_key(moved, "-O2")
    assert library_key(tree, "-O2") != library_key(changed, "-O2")
    assert library_key(tree, "-O2") != library_key(tree, "-Os")


def test_compile_error_names_the_source(tmp_path) -> None:
    root = standin_tree(tmp_path / "tree")
    (root / "third_party/cmsis_nn/b.c").write_text("int b(int x) { return x +; }\n")
    with pytest.raises(BuildError, match=r"compiling TFLite Micro source .*third_party/cmsis_nn/b\.c"):
        build_library(load_tree(root), cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache" / "tflm").glob("*/library.json"))  # nothing half-built is cached
