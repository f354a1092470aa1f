"""CONDORWORKFLOW status refresh: 20 active DAGMan workflows of 26 nodes, jobtower vs Tethys 4.6.1.

    python bench/bench_workflow.py [--workflows 20] [--nodes 26] [--cycles 5] [--db-url URL]

Needs the pool of scripts/engines/condor.sh (its client environment as bench_condor.py reads it).

setup       N workflows of `--nodes` nodes each (prep -> runs... -> post) are submitted through
            DAGMan. The prep node asks for `requirements = false`, so it waits in the queue and never
            takes the pool's one execute slot: every workflow stays active, with its node status file
            written by DAGMan, while the refresh is measured (what is measured does not depend on
            which nodes have run).
cycle       `Monitor().cycle()` over the N active workflows, timed `--cycles` times after a warm-up:
            wall time, schedd queries (counted by the backend) and SQL statements per cycle.
tethys      what Tethys Platform 4.6.1 runs to refresh one workflow (CondorWorkflow._update_status,
            condorpy 0.7.0 from the virtualenv of bench/peer/setup_tethys_venv.sh): the DAG's status
            (`condor_q <dag> && condor_history <dag>` in a shell) and its nodes' statuses, batched per
            DAG (`condor_q -constraint DAGManJobID==<dag> && condor_history ...`), and, as 4.6.1 does
            for a node the batch misses and as earlier Tethys did for every node, one
            `condor_q <node> && condor_history <node>` per node ("per node" below; timed on each
            workflow's queued node, `--nodes` times).

Prints the figures and the ratios; the raw JSON goes to bench/results/workflow-<time>.json. Every
DAGMan job of the bench is removed from the pool at the end (DAGMan removes its nodes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import benchlib
from bench_condor import condor_environment, remove_clusters

log = benchlib.logger("bench_workflow")

#: The Tethys side, under the Tethys virtualenv's python: condorpy's own code per workflow and per node.
TETHYS_REFRESH = r"""
import json, sys, time
from condorpy import Job, Workflow
work = json.loads(sys.argv[1])      # [[dag cluster, node cluster], ...]
nodes = int(sys.argv[2])
start = time.perf_counter()
for dag, node in work:
    wf = Workflow("bench", None, {})
    wf._cluster_id = dag
    wf.status                                   # condor_q + condor_history of the DAG
    wf.node_statuses_by_cluster_id()            # one batched condor_q + condor_history per DAG
batched = time.perf_counter() - start
start = time.perf_counter()
for dag, node in work:
    wf = Workflow("bench", None, {})
    wf._cluster_id = dag
    wf.status
    for _ in range(nodes):                      # one condor_q + condor_history per node
        job = Job("bench")
        job._cluster_id = node
        job.status
per_node = time.perf_counter() - start
print(json.dumps({"batched_seconds": batched, "per_node_seconds": per_node}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workflows", type=int, default=20)
    parser.add_argument("--nodes", type=int, default=26)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--db-url", default=None, help="JOBTOWER_DATABASE_URL (default: SQLite in a temp dir)")
    args = parser.parse_args()
    if args.nodes < 3:
        raise SystemExit("--nodes must be at least 3 (prep, a run, post)")

    condor_environment()
    home = tempfile.mkdtemp(prefix="jobtower-bench-wf-")
    workspace = tempfile.mkdtemp(prefix="jobtower-bench-wf-ws-")
    os.chmod(workspace, 0o755)
    benchlib.setup_django(home, args.db_url)

    import htcondor
    from django.db import connection

    import jobtower
    from jobtower.backends import get_backend
    from jobtower.monitor import Monitor

    backend = get_backend("jobtower.backends.dagman:DAGManBackend")
    _, manager, user = benchlib.bench_app("bench_workflow", "Workflow bench")
    results: dict = benchlib.results_head(
        workflows=args.workflows, nodes=args.nodes, database=connection.vendor,
        htcondor_bindings=htcondor.version().split()[1], pool=htcondor.Schedd().location.version.split()[1],
    )
    dags: list[int] = []
    try:
        log(f"submitting {args.workflows} workflows of {args.nodes} nodes")
        start = time.perf_counter()
        flows = []
        for i in range(args.workflows):
            wf = manager.create_job(name=f"bench_wf_{i}_{{id}}", user=user, job_type="CONDORWORKFLOW",
                                    workspace=workspace, max_jobs={"runs": 4})
            wf.save()
            prep = wf.add_node(name="prep", attributes={"executable": "/bin/true", "requirements": "false"})
            runs = [wf.add_node(name=f"run_{n}", attributes={"executable": "/bin/true"}, parents=[prep],
                                category="runs") for n in range(args.nodes - 2)]
            wf.add_node(name="post", attributes={"executable": "/bin/true"}, parents=runs)
            wf.execute()
            dags.append(wf.cluster_id)
            flows.append(wf)
        results["submit"] = {"seconds": time.perf_counter() - start}
        log(f"submitted in {results['submit']['seconds']:.1f} s; waiting for DAGMan to queue each prep node")
        schedd = htcondor.Schedd()
        constraint = f"member(DAGManJobId, {{{', '.join(str(d) for d in dags)}}})"
        deadline = time.monotonic() + 300
        node_of: dict[int, int] = {}
        while time.monotonic() < deadline:
            node_of = {int(ad["DAGManJobId"]): int(ad["ClusterId"])
                       for ad in schedd.query(constraint, ["DAGManJobId", "ClusterId"])}
            if len(node_of) == len(dags):
                break
            time.sleep(1)
        if len(node_of) != len(dags):
            raise SystemExit(f"only {len(node_of)} of {len(dags)} DAGs queued their first node within 5 min")

        monitor = Monitor(results_threads=0)
        # after a warm-up cycle (which reads the node status files once)
        walls, _, queries, statements = benchlib.timed_cycles(monitor.cycle, args.cycles, lambda: backend.queries)
        states = {wf.pk: jobtower.Job.objects.get(pk=wf.pk).status_code.display for wf in flows}
        results["cycle"] = {
            "median_ms": 1000 * statistics.median(walls), "max_ms": 1000 * max(walls),
            "schedd_queries": max(queries), "sql_statements": max(statements),
            "all_ms": [1000 * w for w in walls], "statuses": sorted(set(states.values())),
        }
        log(f"monitor cycle: {results['cycle']['median_ms']:.1f} ms, {max(queries)} schedd queries")

        python = benchlib.tethys_python(log)
        if python:
            work = [[dag, node_of[dag]] for dag in dags]
            log("Tethys (condorpy): the same refresh, batched per DAG and per node")
            out = subprocess.run([python, "-c", TETHYS_REFRESH, json.dumps(work), str(args.nodes)], check=True,
                                 stdout=subprocess.PIPE, text=True, env=os.environ.copy()).stdout
            polled = json.loads(out)
            results["tethys"] = {
                "batched_seconds": polled["batched_seconds"], "batched_queries": 4 * len(dags),
                "batched_processes": 6 * len(dags),
                "per_node_seconds": polled["per_node_seconds"],
                "per_node_queries": (2 + 2 * args.nodes) * len(dags),
                "per_node_processes": (3 + 3 * args.nodes) * len(dags),
            }
    finally:
        if dags:
            log("removing the bench's workflows from the pool")
            remove_clusters(dags, "bench_workflow: done")
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(workspace, ignore_errors=True)

    report(results)
    log(f"raw figures: {benchlib.save_results('workflow', results)}")
    return 0


def report(r: dict) -> None:
    cycle, tethys = r["cycle"], r.get("tethys")
    print(f"\nHTCondor {r['pool']} pool, bindings {r['htcondor_bindings']}, {r['database']}, {r['machine']}")
    print(f"{r['workflows']} active workflows x {r['nodes']} nodes (submitted in {r['submit']['seconds']:.1f} s)")
    print(f"jobtower, one monitor cycle:  {cycle['median_ms']:.1f} ms median (max {cycle['max_ms']:.1f}), "
          f"{cycle['schedd_queries']} schedd queries, {cycle['sql_statements']} SQL statements, 0 processes")
    if tethys:
        print(f"Tethys 4.6.1 batched per DAG:  {1000 * tethys['batched_seconds']:.0f} ms, "
              f"{tethys['batched_queries']} schedd queries, {tethys['batched_processes']} processes")
        print(f"Tethys per node:               {1000 * tethys['per_node_seconds']:.0f} ms, "
              f"{tethys['per_node_queries']} schedd queries, {tethys['per_node_processes']} processes")
        base = cycle["median_ms"] / 1000
        print(f"ratio (Tethys / jobtower) wall time: batched {tethys['batched_seconds'] / base:.0f}x, "
              f"per node {tethys['per_node_seconds'] / base:.0f}x; schedd queries: batched "
              f"{tethys['batched_queries'] / max(cycle['schedd_queries'], 1):.0f}x, per node "
              f"{tethys['per_node_queries'] / max(cycle['schedd_queries'], 1):.0f}x")


if __name__ == "__main__":
    sys.exit(main())
