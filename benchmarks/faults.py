"""Kill `mpath-tf search` with SIGKILL at random moments of every phase; resume; compare.

    python benchmarks/faults.py [--kills 50] [--per-run 5] [--seed 0] [--out DIR]

One uninterrupted run of a small search (``tests/faults.py``: digits,
mpath-2-6, one-shot, dense reference, two samples, final fine-tuning,
export, timing), then interrupted runs of the same search until ``--kills``
kills have landed: each run is killed ``--per-run`` times, at phases drawn
with the seed (cycling through all of them) and delays uniform in [0, 1.5) s
after the phase began, and each kill is followed by a resume. Per kill it
checks that the resumed process redid no finished step and resumed every
killed training after its last finished epoch; per run, that the final
process exited as the uninterrupted one did and that ``results.json``
(timings aside) and every ``.tflite`` are byte-identical to it.

Prints one row per phase (kills landed, resumed cleanly, in a run that
ended identical) and the totals, and writes ``faults.json`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/faults.py

from tests import faults  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=50, help="kills to land (at least)")
    parser.add_argument("--per-run", type=int, default=5, help="kills per interrupted run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark-faults"))
    args = parser.parse_args(argv)
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    started = time.perf_counter()

    whole = args.out / "whole"
    whole_code, output = faults.run_to_end(whole)
    if not faults.finished(whole_code, output):
        sys.exit(f"the uninterrupted search failed (exit {whole_code}):\n{output}")
    want = faults.outputs(whole)
    print(f"uninterrupted run: exit {whole_code}, {len(want['files'])} .tflite files", flush=True)

    records, runs = [], []
    seed = args.seed
    while sum(r["killed"] for r in records) < args.kills:
        run = args.out / f"run-{seed}"
        plan = faults.kill_plan(seed, args.per_run)
        kills, code, output = faults.interrupted_run(run, plan)
        got = faults.outputs(run) if (run / "results.json").is_file() else None
        identical = bool(got is not None and code == whole_code
                         and got["results"] == want["results"] and got["files"] == want["files"])
        for k in kills:
            k.update(run=run.name, identical_run=identical)
        records += kills
        runs.append({"run": run.name, "seed": seed, "plan": plan, "exit": code,
                     "identical": identical})
        landed = [k["phase"] for k in kills if k["killed"]]
        print(f"{run.name}: killed in {', '.join(landed) or 'nothing'}; final exit {code}; "
              f"{'identical' if identical else 'DIFFERENT'}", flush=True)
        seed += 1

    by_phase: dict[str, Counter] = {}
    for i, k in enumerate(records):
        if not k["killed"]:
            continue
        c = by_phase.setdefault(k["phase"], Counter())
        c["kills"] += 1
        nxt = records[i + 1]  # the process after a kill: the next record of the same run
        c["clean"] += (not nxt["redone"] and not nxt["not_resumed"]
                       and nxt["code"] in (-9, whole_code))
        c["identical"] += k["identical_run"]
    print()
    print("| phase | kills | resumed cleanly | in a run ending identical |")
    print("|---|---|---|---|")
    total = Counter()
    for phase in faults.PHASES:
        if phase in by_phase:
            c = by_phase[phase]
            total.update(c)
            print(f"| {phase} | {c['kills']} | {c['clean']} | {c['identical']} |")
    print(f"| all | {total['kills']} | {total['clean']} | {total['identical']} |")
    print(f"\n{len(runs)} interrupted runs, {sum(r['identical'] for r in runs)} identical to the "
          f"uninterrupted one; {time.perf_counter() - started:.0f} s")
    (args.out / "faults.json").write_text(json.dumps(
        {"runs": runs, "kills": records, "summary": dict(total)}, indent=2, default=str))


if __name__ == "__main__":
    main()
