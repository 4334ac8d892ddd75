"""write_model_dir and compile_kernel_library, checked through the real libdlr.so."""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ggic.classifier.backends.dlr import import_dlr
from ggic.modelgen import (
    GraphBuilder,
    KernelCompileError,
    compile_kernel_library,
    read_params,
    write_model_dir,
)

KERNELS = textwrap.dedent(
    """
    #include "tvm_abi.h"

    /* out[i] = in[i % n_in] + i */
    GGIC_KERNEL(ggic_t_repeat) {
      GGIC_UNUSED_ABI_ARGS();
      GGIC_EXPECT_ARGS("ggic_t_repeat", 2);
      const DLTensor* x = GGIC_TENSOR(0);
      DLTensor* out = GGIC_TENSOR(1);
      const float* xd = ggic_data(x);
      float* o = ggic_data(out);
      if (xd[0] == -777.0f) return ggic_fail("ggic_t_repeat refused the poison input -777");
      const int64_t n = ggic_numel(x);
      for (int64_t i = 0; i < ggic_numel(out); ++i) o[i] = xd[i % n] + (float)i;
      return 0;
    }

    /* out = in * w + 1 (w broadcast from its first element) */
    GGIC_KERNEL(ggic_t_affine) {
      GGIC_UNUSED_ABI_ARGS();
      GGIC_EXPECT_ARGS("ggic_t_affine", 3);
      const float* xd = ggic_data(GGIC_TENSOR(0));
      const float* w = ggic_data(GGIC_TENSOR(1));
      float* o = ggic_data(GGIC_TENSOR(2));
      for (int64_t i = 0; i < ggic_numel(GGIC_TENSOR(2)); ++i) o[i] = xd[i] * w[0] + 1.0f;
      return 0;
    }

    GGIC_KERNEL(ggic_t_sum) {
      GGIC_UNUSED_ABI_ARGS();
      GGIC_EXPECT_ARGS("ggic_t_sum", 3);
      const float* a = ggic_data(GGIC_TENSOR(0));
      const float* b = ggic_data(GGIC_TENSOR(1));
      float* o = ggic_data(GGIC_TENSOR(2));
      for (int64_t i = 0; i < ggic_numel(GGIC_TENSOR(2)); ++i) o[i] = a[i] + b[i];
      return 0;
    }
    """
)


@pytest.fixture(scope="module")
def dlr():
    return import_dlr()


@pytest.fixture()
def kernel_file(tmp_path: Path) -> Path:
    path = tmp_path / "src" / "kernels.c"
    path.parent.mkdir()
    path.write_text(KERNELS)
    return path


def _repeat(x: np.ndarray, n: int) -> np.ndarray:
    return np.array([x[i % x.size] + i for i in range(n)], dtype=np.float32)


def _growing_graph(scale: float = 3.0) -> tuple[GraphBuilder, dict]:
    """x[8] -> a[32] -> b[32] -> c[64] -> d[64] -> e = c + d; c and d must reuse (and grow)
    the storage of a and b."""
    g = GraphBuilder()
    x = g.input("x", (8,))
    w = g.param("w", np.array([scale], np.float32))
    a = g.op("a", "ggic_t_repeat", [x], (32,))
    b = g.op("b", "ggic_t_affine", [a, w], (32,))
    c = g.op("c", "ggic_t_repeat", [b], (64,))
    d = g.op("d", "ggic_t_affine", [c, w], (64,))
    e = g.op("e", "ggic_t_sum", [c, d], (64,))
    g.output(e)
    return g, {"x": x, "a": a, "b": b, "c": c, "d": d, "e": e}


def _numpy_growing(x: np.ndarray, scale: float) -> np.ndarray:
    a = _repeat(x, 32)
    b = a * np.float32(scale) + np.float32(1)
    c = _repeat(b, 64)
    d = c * np.float32(scale) + np.float32(1)
    return c + d


def test_storage_reuse_happens_and_dlr_results_stay_right(
    tmp_path: Path, kernel_file: Path, dlr
) -> None:
    g, t = _growing_graph()
    sids = g.storage_ids()
    assert sids[t["c"].node_id] == sids[t["a"].node_id]  # reused, grown from 128 to 256 bytes
    assert sids[t["d"].node_id] == sids[t["b"].node_id]
    assert len(set(sids)) == len(sids) - 2
    files = write_model_dir(tmp_path / "m", g, kernel_file)
    graph = json.loads(files.graph.read_text())
    assert graph["attrs"]["storage_id"] == ["list_int", sids]

    model = dlr.DLRModel(str(files.directory), "cpu")
    rng = np.random.default_rng(0)
    for _ in range(3):  # repeated runs: reused buffers must not leak state between runs
        x = rng.standard_normal(8).astype(np.float32)
        (out,) = model.run({"x": x})
        np.testing.assert_allclose(out, _numpy_growing(x, 3.0), rtol=1e-6)


def test_files_weights_and_metadata_as_dlr_sees_them(
    tmp_path: Path, kernel_file: Path, dlr
) -> None:
    g, _ = _growing_graph(scale=0.5)
    files = write_model_dir(tmp_path / "m", g, kernel_file, target_device="ml_m5")
    assert sorted(p.name for p in files.directory.iterdir()) == [
        "compiled.meta",
        "compiled.params",
        "compiled.so",
        "compiled_model.json",
    ]
    assert files.meta is not None
    meta = json.loads(files.meta.read_text())
    assert meta["Requirements"] == {"TargetDevice": "ml_m5", "TargetDeviceType": "cpu"}
    assert isinstance(meta["Compilation"]["CreatedTime"], float)
    assert meta["Model"] == {
        "Inputs": [{"name": "x", "dtype": "float32", "shape": [8]}],
        "Outputs": [{"name": "e", "dtype": "float32", "shape": [64]}],
    }
    assert list(read_params(files.params)) == ["w"]

    model = dlr.DLRModel(str(files.directory), "cpu")
    assert model.get_input_names() == ["x"]
    assert model.get_output_names() == ["e"]  # read by libdlr from compiled.meta
    assert model.has_metadata()
    x = np.arange(8, dtype=np.float32)
    np.testing.assert_allclose(model.run({"x": x})[0], _numpy_growing(x, 0.5), rtol=1e-6)


def test_custom_file_names_two_outputs_and_no_meta(tmp_path: Path, kernel_file: Path, dlr) -> None:
    g = GraphBuilder()
    x = g.input("x", (4,))
    w = g.param("w", np.array([2.0], np.float32))
    y = g.op("y", "ggic_t_affine", [x, w], (4,))
    z = g.op("z", "ggic_t_repeat", [y], (6,))
    g.output(z, y)
    files = write_model_dir(
        tmp_path / "m",
        g,
        [kernel_file],
        graph_file="deploy_graph.json",
        stem="deploy",
        write_meta=False,
    )
    assert files.meta is None
    assert sorted(p.name for p in files.directory.iterdir()) == [
        "deploy.params",
        "deploy.so",
        "deploy_graph.json",
    ]
    model = dlr.DLRModel(str(files.directory), "cpu")
    assert not model.has_metadata()
    x_val = np.array([1, 2, 3, 4], np.float32)
    out_z, out_y = model.run({"x": x_val})
    np.testing.assert_allclose(out_y, x_val * 2 + 1)
    np.testing.assert_allclose(out_z, _repeat(x_val * 2 + 1, 6))


def test_kernel_error_surfaces_from_run_with_its_message(
    tmp_path: Path, kernel_file: Path, dlr
) -> None:
    g, _ = _growing_graph()
    model = dlr.DLRModel(str(write_model_dir(tmp_path / "m", g, kernel_file).directory), "cpu")
    x = np.zeros(8, np.float32)
    x[0] = -777
    with pytest.raises(Exception, match="refused the poison input -777"):
        model.run({"x": x})
    x[0] = 1  # the model stays usable after an error
    np.testing.assert_allclose(model.run({"x": x})[0], _numpy_growing(x, 3.0), rtol=1e-6)


# -- refusals ------------------------------------------------------------------------------------
def test_second_json_in_the_directory_is_refused_and_dlr_would_refuse_it_too(
    tmp_path: Path, kernel_file: Path, dlr, capfd: pytest.CaptureFixture[str]
) -> None:
    g, _ = _growing_graph()
    out = tmp_path / "m"
    out.mkdir()
    (out / "imagenet_class_index.json").write_text("{}")
    with pytest.raises(ValueError, match=r"imagenet_class_index\.json.*two \*\.json"):
        write_model_dir(out, g, kernel_file)
    assert sorted(p.name for p in out.iterdir()) == ["imagenet_class_index.json"]  # untouched

    # Why it matters: libdlr itself refuses such a directory. (Its exception message is empty
    # or left over from an earlier error; the reason only goes to stderr.)
    good = write_model_dir(tmp_path / "good", g, kernel_file)
    (good.directory / "version.json").write_text("{}")
    capfd.readouterr()
    with pytest.raises(Exception):  # noqa: B017 - dlr.DLRError, whatever its message
        dlr.DLRModel(str(good.directory), "cpu")
    assert "Found multiple *.json files" in capfd.readouterr().err


@pytest.mark.parametrize("stray", ["other.so", "old.params", "old.meta"])
def test_other_model_files_in_the_directory_are_refused(
    tmp_path: Path, kernel_file: Path, stray: str
) -> None:
    out = tmp_path / "m"
    out.mkdir()
    (out / stray).write_bytes(b"")
    with pytest.raises(ValueError, match=stray.replace(".", r"\.")):
        write_model_dir(out, _growing_graph()[0], kernel_file)


def test_rewriting_the_same_directory_is_allowed(tmp_path: Path, kernel_file: Path, dlr) -> None:
    g, _ = _growing_graph()
    write_model_dir(tmp_path / "m", g, kernel_file)
    (tmp_path / "m" / "synset.txt").write_text("{0: 'a'}")  # not a model-file extension
    files = write_model_dir(tmp_path / "m", g, kernel_file)
    assert dlr.DLRModel(str(files.directory), "cpu").get_input_names() == ["x"]


def test_colon_in_path_is_refused(tmp_path: Path, kernel_file: Path) -> None:
    with pytest.raises(ValueError, match="':'"):
        write_model_dir(tmp_path / "a:b", _growing_graph()[0], kernel_file)
    assert not (tmp_path / "a:b").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"graph_file": "graph.txt"}, "ending in .json"),
        ({"graph_file": "sub/graph.json"}, "plain file name"),
        ({"stem": "libdlr"}, "libdlr"),
        ({"stem": ""}, "plain file name"),
    ],
)
def test_bad_file_names_are_refused(tmp_path: Path, kernel_file: Path, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        write_model_dir(tmp_path / "m", _growing_graph()[0], kernel_file, **kwargs)


def test_param_without_node_is_refused_before_writing(tmp_path: Path, kernel_file: Path) -> None:
    g, _ = _growing_graph()
    g.params["orphan"] = np.zeros(1, np.float32)
    with pytest.raises(ValueError, match="orphan"):
        write_model_dir(tmp_path / "m", g, kernel_file)
    assert not (tmp_path / "m").exists()


def test_kernel_name_defined_by_libm_is_refused(tmp_path: Path, kernel_file: Path) -> None:
    g = GraphBuilder()
    g.output(g.op("y", "cosf", [g.input("x", (1,))], (1,)))
    with pytest.raises(ValueError, match="cosf.*already defined"):
        write_model_dir(tmp_path / "m", g, kernel_file)


def test_kernel_missing_from_the_library_is_refused(tmp_path: Path, kernel_file: Path) -> None:
    g = GraphBuilder()
    g.output(g.op("y", "ggic_t_not_written", [g.input("x", (1,))], (1,)))
    with pytest.raises(ValueError, match="does not export ggic_t_not_written"):
        write_model_dir(tmp_path / "m", g, kernel_file)
    assert not (tmp_path / "m" / "compiled.so").exists()


# -- compiling -----------------------------------------------------------------------------------
def test_compile_error_carries_the_compiler_stderr(tmp_path: Path) -> None:
    src = tmp_path / "broken.c"
    src.write_text('#include "tvm_abi.h"\nGGIC_KERNEL(ggic_x) { return undefined_name; }\n')
    with pytest.raises(KernelCompileError) as info:
        compile_kernel_library(src, tmp_path / "x.so")
    assert "undefined_name" in str(info.value)
    assert "broken.c" in info.value.stderr
    assert info.value.returncode != 0
    assert not (tmp_path / "x.so").exists()
    assert not list(tmp_path.glob("*.tmp"))


def test_compiler_comes_from_cc(tmp_path: Path, kernel_file: Path, monkeypatch) -> None:
    monkeypatch.setenv("CC", "no-such-compiler-ggic")
    with pytest.raises(FileNotFoundError, match="no-such-compiler-ggic"):
        compile_kernel_library(kernel_file, tmp_path / "x.so")


def test_missing_source_is_reported(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.c"):
        compile_kernel_library(tmp_path / "nope.c", tmp_path / "x.so")


def test_include_dirs_and_defines_reach_the_compiler(tmp_path: Path) -> None:
    inc = tmp_path / "inc"
    inc.mkdir()
    (inc / "answer.h").write_text("#define ANSWER_BASE 40\n")
    src = tmp_path / "k.c"
    src.write_text(
        '#include "tvm_abi.h"\n#include "answer.h"\n'
        "GGIC_EXPORT int ggic_answer(void) { return ANSWER_BASE + EXTRA; }\n"
    )
    lib = compile_kernel_library(
        src, tmp_path / "k.so", include_dirs=[inc], extra_flags=["-DEXTRA=2"], opt_level="-O1"
    )
    assert ctypes.CDLL(str(lib)).ggic_answer() == 42


def test_openmp_library_is_marked_nodelete_and_survives_model_teardown(tmp_path: Path) -> None:
    src = tmp_path / "omp.c"
    src.write_text(
        textwrap.dedent(
            """
        #include "tvm_abi.h"
        GGIC_KERNEL(ggic_t_omp_square) {
          GGIC_UNUSED_ABI_ARGS();
          GGIC_EXPECT_ARGS("ggic_t_omp_square", 2);
          const float* x = ggic_data(GGIC_TENSOR(0));
          float* o = ggic_data(GGIC_TENSOR(1));
          const int64_t n = ggic_numel(GGIC_TENSOR(1));
          #pragma omp parallel for
          for (int64_t i = 0; i < n; ++i) o[i] = x[i] * x[i];
          return 0;
        }
        """
        )
    )
    g = GraphBuilder()
    g.output(g.op("y", "ggic_t_omp_square", [g.input("x", (4096,))], (4096,)))
    files = write_model_dir(tmp_path / "m", g, src, openmp=True)
    dynamic = subprocess.run(
        ["readelf", "-d", str(files.library)], capture_output=True, text=True, check=False
    ).stdout
    if dynamic:
        assert "NODELETE" in dynamic
        assert "libgomp" in dynamic
    # Load, run, free the model and exit in a fresh interpreter: must not crash.
    script = textwrap.dedent(
        f"""
        import gc, numpy as np
        from ggic.classifier.backends.dlr import import_dlr
        dlr = import_dlr()
        m = dlr.DLRModel({str(files.directory)!r}, "cpu")
        x = np.linspace(-2, 2, 4096).astype(np.float32)
        assert np.allclose(m.run({{"x": x}})[0], x * x)
        del m
        gc.collect()
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")
