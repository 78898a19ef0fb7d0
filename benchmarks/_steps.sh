# The steps of a prepared benchmark run (run_gpu.sh, run_tpu.sh): sourced, never run on its own.
#
#   parse_mode SCRIPT [--smoke | --image] sets SMOKE and IMAGE (0 or 1); anything else: usage, exit 2
#   smoke_setup NAME                      the --smoke run's OUT (a temporary folder), PY, JAX_PLATFORMS, XLA_FLAGS
#   install_image_wheels WHEELS           the --image install: the wheels in WHEELS, if any, over the image's (sets PY)
#   install_wheels WHEELS VENV PYTHON PACKAGES...   a venv (or a --target folder) from WHEELS alone (sets PY)
#   steps_begin SUMMARY_FILE              start the summary (truncates it), record recurrax doctor beside it
#   run NAME CAP_SECONDS MODULE ARGS...   one step in its own process, cut by SIGINT at the cap
#   usable_kernels KERNEL_JSON CELLS      the kernels the kernel check found right for every one of CELLS
#   steps_end                             print the summary and what was written
#
# Apart from the installs, the caller sets PY (the Python to run) and OUT (the results folder); KERNEL_COMPILE_S (default 20) and
# TAR_TO (optional) are read when the functions run.

# parse_mode SCRIPT [ARG]: the script's one optional argument.
parse_mode() {
    local script=$1 mode=${2:-}
    SMOKE=0
    IMAGE=0
    if [ "$mode" = "--smoke" ]; then
        SMOKE=1
    elif [ "$mode" = "--image" ]; then
        IMAGE=1
    elif [ -n "$mode" ]; then
        echo "usage: bash benchmarks/$script [--smoke | --image]" >&2
        exit 2
    fi
}

# smoke_setup NAME: the same steps on tiny shapes with the Python at hand (.venv's, else python3; or $PY),
# nothing installed, on the CPU unless JAX_PLATFORMS says otherwise. Smoke sizes measure nothing: compile as
# cheaply as the tests do (tests/cheap_compile.py).
smoke_setup() {
    OUT="${OUT:-$(mktemp -d "/tmp/recurrax-$1-smoke.XXXXXX")}"
    if [ -z "${PY:-}" ]; then
        if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
    fi
    export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}"
    XLA_FLAGS="${XLA_FLAGS:-$("$PY" -c 'import sys; sys.path.insert(0, "tests"); import cheap_compile; print(cheap_compile.xla_flags())')}"
    export XLA_FLAGS
}

# install_image_wheels WHEELS: on an image that has the stack, this checkout's pinned wheels (if any) win;
# --no-deps, since the image supplies the rest. PY is $PYTHON or python3.
install_image_wheels() {
    local wheels=$1
    PY="${PYTHON:-python3}"
    if compgen -G "$wheels/*.whl" >/dev/null; then
        "$PY" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/recurrax-site "$wheels"/*.whl
        export PYTHONPATH="/tmp/recurrax-site"
    fi
}

# install_wheels WHEELS VENV PYTHON PACKAGES...: PACKAGES from the folder WHEELS only (nothing downloaded)
# into the venv VENV, made with PYTHON; PY is the venv's Python.
install_wheels() {
    local wheels=$1 venv=$2 python=$3
    shift 3
    if [ -x "$venv/bin/python" ] || "$python" -m venv "$venv" 2>/dev/null; then
        PY="$venv/bin/python"
        "$PY" -m pip install --no-index --find-links "$wheels" --quiet "$@"
    else
        # No venv module (Debian's python without python3.X-venv): install into a folder instead.
        rm -rf "$venv"
        PY="$python"
        "$PY" -m pip install --no-index --find-links "$wheels" --quiet --target "$venv/site" "$@"
        export PYTHONPATH="$venv/site"
    fi
}

# steps_begin SUMMARY_FILE: every step's verdict, the kernels left out and why, go to this file.
# Also records `recurrax doctor` beside it (X_run.txt -> X_doctor.txt): versions, devices, and what
# kernel="pallas" runs there (on a GPU the state tiles the kernels use).
steps_begin() {
    SUMMARY=$1
    : >"$SUMMARY"
    "$PY" -m recurrax.info >"${SUMMARY%_run.txt}_doctor.txt" 2>&1 || echo "recurrax doctor failed (see the file)" >>"$SUMMARY"
}

# run NAME CAP_SECONDS MODULE ARGS...: one step in its own process, cut by SIGINT at the cap.
run() {
    local name=$1 cap=$2 module=$3
    shift 3
    local start=$SECONDS status=0
    echo "== $name (cap ${cap} s)"
    timeout --signal=INT --kill-after=20 "$cap" "$PY" -m "$module" "$@" 2>&1 |
        tee "$OUT/$name.log" || status=$?
    local verdict="finished"
    if [ "$status" != 0 ]; then verdict="stopped with status $status (124 or 130: the time cap)"; fi
    if grep -q "interrupted in suite" "$OUT/$name.log"; then verdict="cut by the time cap (partial results)"; fi
    echo "$name: $verdict after $((SECONDS - start)) s" | tee -a "$SUMMARY"
    # TAR_TO: one archive of everything written so far, refreshed after every step, for a caller that can
    # fetch only a few files back (or may be cut off before the end).
    if [ -n "${TAR_TO:-}" ]; then tar czf "$TAR_TO" -C "$OUT" . || true; fi
}

# usable_kernels KERNEL_JSON CELLS: the kernels (comma-separated) that the kernel check found right and quick to
# compile for every one of CELLS (comma-separated). Only the kernels the check ran are named: a TPU run's
# check has Pallas rows alone (no cuDNN there).
usable_kernels() {
    "$PY" - "$1" "${KERNEL_COMPILE_S:-20}" "$SUMMARY" "$2" <<'PY'
import json, sys
path, cap, summary, cells = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4].split(",")
try:
    rows = json.load(open(path))["rows"]
except (OSError, ValueError, KeyError):
    rows = []
verdict, notes = {}, []
for r in rows:
    if r["kernel"] not in ("pallas", "cudnn") or r["cell"] not in cells:
        continue  # the direct-call diagnosis rows, and the other suites' cells
    why = r.get("error")
    worst = max(r.get("outputs", 0.0), r.get("final_carry", 0.0), r.get("gradients", 0.0))
    if why is None and worst > 1e-3:
        why = f"differs from the step loop by {worst:.1e}"
    if why is None and r.get("kernel_first_call_s", 0.0) > cap:
        why = f"first call (compile) took {r['kernel_first_call_s']:.0f} s"
    if why is not None and r["reverse"]:
        # The suites time forward calls only; a reversed call that fails is recorded, not a reason to skip.
        notes.append(f"kernel {r['kernel']} {r['cell']} reverse=True: {why}"[:300])
    elif why is not None:
        verdict[r["kernel"]] = f"{r['cell']}: {why}"[:300]
    else:
        verdict.setdefault(r["kernel"], None)
with open(summary, "a") as out:
    for note in notes:
        out.write(note + "\n")
    for kernel, why in verdict.items():
        if why is not None:
            out.write(f"kernel {kernel} left out of the timed suites of {','.join(cells)}: {why}\n")
print(",".join(k for k, why in verdict.items() if why is None))
PY
}

# steps_end: the summary of what finished and what was cut, then the files written.
steps_end() {
    echo "== summary ($SUMMARY)"
    cat "$SUMMARY"
    ls -l "$OUT"
}
