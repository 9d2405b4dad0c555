"""Probe: can the linked oneDNN fuse an int8 expand 1x1 + depthwise 3x3 with the .tflite
file's per-channel depthwise scales? (issue 11: what would close the int8 gap)

Compiles ``benchmarks/probes/int8_dw_fusion.c`` with the C compiler against the headers
and library the package itself builds with (setup.py's ``onednn-devel-cpu-gomp`` /
``onednn-cpu-gomp`` wheels), runs it with one OpenMP thread (what each lane of a large
batch runs; oneDNN's fusion heuristic depends on the thread count) and prints, per way of
attaching the scales, the implementation oneDNN picks. ``ref_fused_convolution`` means
oneDNN declines to fuse and runs the two convolutions one after the other.

Usage:   python3 benchmarks/probe_int8_fusion.py
Writes:  nothing (prints); the README quotes its output.
"""
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def main():
    from tflite_transfer._native import _dist_file  # how the package itself finds the oneDNN wheels

    header = _dist_file("onednn-devel-cpu-gomp", "oneapi/dnnl/dnnl.h")
    lib = _dist_file("onednn-cpu-gomp", "/libdnnl.so.3")
    if header is None or lib is None:
        raise SystemExit("probe_int8_fusion: the onednn-devel-cpu-gomp / onednn-cpu-gomp wheels are not installed "
                         "(./run.sh installs them)")
    lib = os.path.dirname(lib)
    include = os.path.dirname(os.path.dirname(os.path.dirname(header)))
    src = os.path.join(HERE, "probes", "int8_dw_fusion.c")
    with tempfile.TemporaryDirectory() as tmp:
        exe = os.path.join(tmp, "probe")
        cc = os.environ.get("CC", "cc")
        try:
            subprocess.run([cc, "-std=c11", "-O1", "-Wall", src, "-I", include, "-L", lib, "-l:libdnnl.so.3",
                            f"-Wl,-rpath,{lib}", "-o", exe], check=True)
        except (OSError, subprocess.CalledProcessError) as e:
            raise SystemExit(f"probe_int8_fusion: could not compile {src} with the C compiler {cc!r} "
                             f"(set CC to another): {e}")
        env = dict(os.environ, OMP_NUM_THREADS="1")
        out = subprocess.run([exe], env=env, check=True, capture_output=True, text=True).stdout
    print(out, end="")


if __name__ == "__main__":
    main()
