"""Load test of a running `whyrec serve`: N requests from C concurrent clients on 127.0.0.1.

    whyrec serve --run runs/quickstart --port 8000 --cache runs/serve-bench/cache.sqlite &
    python benchmarks/serve_load.py --url http://127.0.0.1:8000 --requests 1000 --clients 20

1. Pre-warm: top-k explanations for --warm_users users (one batched request each, concurrent).
2. A seeded mix of requests, shuffled: recommendations without explanations, explanations
   the cache holds, recommendations with cached explanations, searches, and a --miss_share
   of explanations nobody asked for before (real generation, merged by the server's batcher).
3. C client threads share the list; every answer's status and latency is recorded.
Prints a markdown table (errors, throughput, p50/p99 per kind and overall) and the server's
batching/cache counters; writes the numbers to --out as JSON. Exits 1 on any error.

    python benchmarks/serve_load.py --compare runs/quickstart/explainer --clients 20 --per_client 2 --rounds 2

`--compare RUN`: continuous batching against the micro-batcher, in this process. The model of RUN
loads once; each round serves it twice on 127.0.0.1 (fresh in-memory caches), once per batcher,
the order alternating between rounds so machine load hits both alike, and the C clients send
the same never-seen explanations (POST /explain, C x --per_client of them) to each. Reports
explanations/s and p50/p99 latency per batcher and their ratios, with the load average. The
clients run in the server's process (threads; they mostly wait on sockets).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))] if xs else float("nan")


def plan(client, n: int, warm_users: int, k: int, miss_share: float, seed: int):
    """Warm-up users and the request list [(kind, method, url, json)]."""
    users = [u["user"] for u in client.get("/users", params={"limit": 100}).json()["users"]]
    rng = random.Random(seed)
    rng.shuffle(users)
    warm, cold = users[:warm_users], users[warm_users:]
    titles = [i["title"] for i in client.get("/items", params={"q": "", "limit": 100}).json()["items"]]
    n_miss = int(round(n * miss_share))
    misses = []
    for u in cold:  # unseen (user, item) pairs: ranks k+1.. of users nobody warmed
        recs = client.get(f"/users/{u}/recommendations", params={"k": k + 3}).json()["recommendations"]
        misses += [(u, r["item"]) for r in recs[k:]]
        if len(misses) >= n_miss:
            break
    reqs = [("miss explain", "POST", "/explain", {"user": u, "item": i}) for u, i in misses[:n_miss]]
    kinds = [("recommend", 0.45), ("cached explain", 0.35), ("cached rec+explain", 0.08), ("search", 0.12)]
    for kind, share in kinds:
        for _ in range(int(round((n - n_miss) * share))):
            u = rng.choice(warm)
            if kind == "recommend":
                reqs.append((kind, "GET", f"/users/{rng.choice(users)}/recommendations?k={k}", None))
            elif kind == "cached explain":
                reqs.append((kind, "POST", "/explain", {"user": u, "item": None}))  # item filled after warm-up
            elif kind == "cached rec+explain":
                reqs.append((kind, "GET", f"/users/{u}/recommendations?k={k}&explain=true", None))
            else:
                reqs.append((kind, "GET", f"/items?q={rng.choice(titles)[:4]}&limit=10", None))
    while len(reqs) < n:
        reqs.append(("recommend", "GET", f"/users/{rng.choice(users)}/recommendations?k={k}", None))
    rng.shuffle(reqs)
    return warm, reqs[:n]


def fire(url: str, bodies: list[dict], clients: int, timeout: float) -> tuple[float, list[tuple[object, float]]]:
    """POST every body to url/explain from `clients` threads; (wall seconds, [(status, seconds)])."""
    import httpx

    results, lock, cursor = [], threading.Lock(), iter(range(len(bodies)))

    def client_loop():
        with httpx.Client(base_url=url, timeout=timeout) as c:
            while True:
                with lock:
                    n = next(cursor, None)
                if n is None:
                    return
                start = time.perf_counter()
                try:
                    status = c.post("/explain", json=bodies[n]).status_code
                except httpx.HTTPError as e:
                    status = type(e).__name__
                with lock:
                    results.append((status, time.perf_counter() - start))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    return time.perf_counter() - t0, results


def serving(app):
    """Serve `app` on a free 127.0.0.1 port in a thread; returns (url, stop)."""
    from whyrec.serve.server import listen, uvicorn_server

    sock = listen("127.0.0.1", 0)
    server = uvicorn_server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)

    def stop():
        server.should_exit = True
        thread.join(30)
        sock.close()

    return f"http://127.0.0.1:{sock.getsockname()[1]}", stop


def compare(args) -> int:
    """Continuous batching vs the micro-batcher on one loaded model, interleaved rounds."""
    import os
    from dataclasses import replace

    from whyrec.config import GenerationConfig
    from whyrec.serve.app import create_app
    from whyrec.serve.cache import ExplanationCache
    from whyrec.serve.model import Pair
    from whyrec.serve.server import build_app
    from whyrec.serve.settings import ServeSettings

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    gen = GenerationConfig(max_new_tokens=args.max_new_tokens)
    settings = ServeSettings(max_batch=args.max_batch)
    model = build_app(args.compare, generation=gen, cache="none", settings=settings).state.model
    systems = {"continuous": replace(settings, continuous=True), "micro-batcher": replace(settings, continuous=False)}
    per_round = args.clients * args.per_client
    users = list(model.catalog.users)
    random.Random(args.seed).shuffle(users)
    pairs = [(u, r["item"]) for u in users[:(per_round * (args.rounds + 1)) // args.k + 1]
             for r in model.recommend(u, args.k)]
    model.explain([Pair(*pairs[0], ())])  # load the LLM and warm it up before any timing
    totals = {k: {"wall": 0.0, "lat": [], "errors": 0, "n": 0, "prefills": []} for k in systems}
    loads = [os.getloadavg()]
    for r in range(args.rounds):
        bodies = [{"user": u, "item": i} for u, i in pairs[1 + r * per_round:1 + (r + 1) * per_round]]
        for name in (list(systems) if r % 2 == 0 else list(systems)[::-1]):
            app = create_app(model, ExplanationCache(None), systems[name])
            url, stop = serving(app)
            try:
                wall, results = fire(url, bodies, args.clients, args.timeout)
            finally:
                stop()
            t = totals[name]
            t["wall"] += wall
            t["n"] += len(results)
            t["lat"] += [sec for status, sec in results]
            t["errors"] += sum(status != 200 for status, _ in results)
            t["prefills"] += app.state.batcher.batch_sizes
            loads.append(os.getloadavg())
            print(f"round {r + 1} {name}: {len(results)} explanations in {wall:.1f} s "
                  f"(load {loads[-1][0]:.2f})", flush=True)
    rows = {}
    for name, t in totals.items():
        lat = [x * 1000 for x in t["lat"]]
        rows[name] = {"explanations_per_s": t["n"] / t["wall"], "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99),
                      "n": t["n"], "errors": t["errors"],
                      "mean_prefill_rows": sum(t["prefills"]) / max(1, len(t["prefills"]))}
    new, old = rows["continuous"], rows["micro-batcher"]
    info = model.info()
    print(f"\n{info['method']} on {info['backbone']}, {args.clients} clients x {args.per_client} never-seen "
          f"explanations per round, {args.rounds} rounds, max_batch {args.max_batch}, max_new_tokens "
          f"{args.max_new_tokens}; load average (1 min) {min(x[0] for x in loads):.2f}-{max(x[0] for x in loads):.2f} "
          f"on {os.cpu_count()} CPUs\n")
    print("| batcher | explanations/s | p50 ms | p99 ms | rows per prefill | errors |\n|---|---|---|---|---|---|")
    for name, x in rows.items():
        print(f"| {name} | {x['explanations_per_s']:.3f} | {x['p50_ms']:.0f} | {x['p99_ms']:.0f} | "
              f"{x['mean_prefill_rows']:.2f} | {x['errors']} |")
    print(f"| ratio continuous / micro-batcher | {new['explanations_per_s'] / old['explanations_per_s']:.2f}× | "
          f"{new['p50_ms'] / old['p50_ms']:.2f}× | {new['p99_ms'] / old['p99_ms']:.2f}× | | |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"rows": rows, "load_average": loads, "args": vars(args)}, f, indent=2)
    return 1 if new["errors"] or old["errors"] else 0


def main() -> int:
    import httpx

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--warm_users", type=int, default=8)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--miss_share", type=float, default=0.03, help="share of never-seen explanations")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--out", default=None)
    ap.add_argument("--compare", default=None, metavar="RUN",
                    help="serve RUN in this process with continuous batching and with the micro-batcher, interleaved")
    ap.add_argument("--per_client", type=int, default=2, help="--compare: explanations each client asks per round")
    ap.add_argument("--rounds", type=int, default=2, help="--compare: rounds (each runs both batchers)")
    ap.add_argument("--max_batch", type=int, default=8, help="--compare: the servers' decoding batch")
    ap.add_argument("--max_new_tokens", type=int, default=64, help="--compare: generation length cap")
    args = ap.parse_args()
    if args.compare:
        return compare(args)
    with httpx.Client(base_url=args.url, timeout=args.timeout) as c:
        info, before = c.get("/info").json(), c.get("/ready").json()
        warm, reqs = plan(c, args.requests, args.warm_users, args.k, args.miss_share, args.seed)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(len(warm)) as pool:  # concurrent, so the server batches the warm-up too
            warm_recs = list(pool.map(lambda u: c.get(f"/users/{u}/recommendations",
                                                     params={"k": args.k, "explain": "true"}).json(), warm))
        warm_s = time.perf_counter() - t0
    warm_items = {r["user"]: [x["item"] for x in r["recommendations"]] for r in warm_recs}
    rng = random.Random(args.seed + 1)
    for _, _, _, body in reqs:
        if body is not None and body.get("item") is None:
            body["item"] = rng.choice(warm_items[body["user"]])
    results, lock, cursor = [], threading.Lock(), iter(range(len(reqs)))

    def client_loop():
        with httpx.Client(base_url=args.url, timeout=args.timeout) as c:
            while True:
                with lock:
                    n = next(cursor, None)
                if n is None:
                    return
                kind, method, url, body = reqs[n]
                start = time.perf_counter()
                try:
                    status = c.request(method, url, json=body).status_code
                except httpx.HTTPError as e:
                    status = type(e).__name__
                with lock:
                    results.append((kind, status, time.perf_counter() - start))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client_loop) for _ in range(args.clients)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    wall = time.perf_counter() - t0
    with httpx.Client(base_url=args.url, timeout=60) as c:
        after = c.get("/ready").json()
    rows = []
    for kind in sorted({r[0] for r in results}) + ["all"]:
        sel = [r for r in results if kind in ("all", r[0])]
        lat = [r[2] * 1000 for r in sel]
        rows.append({"kind": kind, "n": len(sel), "errors": sum(r[1] != 200 for r in sel),
                     "p50_ms": round(pct(lat, 50), 1), "p99_ms": round(pct(lat, 99), 1), "max_ms": round(max(lat), 1)})
    errors = rows[-1]["errors"]
    summary = {"model": f"{info['method']} on {info['backbone']}", "requests": len(results), "clients": args.clients,
               "wall_s": round(wall, 1), "throughput_rps": round(len(results) / wall, 1), "errors": errors,
               "warmup": {"users": len(warm), "explanations": sum(map(len, warm_items.values())), "s": round(warm_s, 1)},
               "server_generate_calls": after["generate_calls"] - before["generate_calls"],
               "server_mean_batch": after["mean_batch"], "cache": after["cache"], "rows": rows,
               "statuses": sorted({str(r[1]) for r in results})}
    print(f"{summary['model']}: {len(results)} requests, {args.clients} clients, {wall:.1f} s, "
          f"{summary['throughput_rps']} req/s, {errors} errors (warm-up: {summary['warmup']})\n")
    print("| request kind | n | errors | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['kind']} | {r['n']} | {r['errors']} | {r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} |")
    print(f"\nserver: {summary['server_generate_calls']} generate calls (mean batch {after['mean_batch']}), "
          f"cache {after['cache']}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(summary, f, indent=2)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
