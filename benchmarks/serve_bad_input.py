"""Bad-input corpus against a running `whyrec serve`: every malformed request must get a 4xx
with a message, and the server must stay healthy and keep answering real requests.

    whyrec serve --run runs/quickstart --port 8000 &
    python benchmarks/serve_bad_input.py --url http://127.0.0.1:8000

Prints one row per request (status, detail) and a summary; exits 1 if any request got a
non-4xx answer or a 4xx without a message, or if the server is unhealthy afterwards.
The same corpus runs in tests/unit/test_serve_api.py against the tiny model.
"""

from __future__ import annotations

import argparse
import json
import sys

HUGE = "x" * 1_000_000


def bad_requests(user: str, item: str) -> list[tuple[str, str, str, dict]]:
    """(name, method, url, httpx kwargs); `user`/`item` are known ids to build near-valid requests."""
    js = {"headers": {"Content-Type": "application/json"}}
    rec = f"/users/{user}/recommendations"
    return [
        ("unknown user", "GET", "/users/no-such-user/recommendations", {}),
        ("k negative", "GET", rec + "?k=-1", {}),
        ("k zero", "GET", rec + "?k=0", {}),
        ("k not a number", "GET", rec + "?k=abc", {}),
        ("k too large", "GET", rec + "?k=100000", {}),
        ("k float", "GET", rec + "?k=1.5", {}),
        ("k infinity", "GET", rec + "?k=inf", {}),
        ("explain not a bool", "GET", rec + "?explain=maybe", {}),
        ("path traversal id", "GET", "/users/..%2F..%2Fetc%2Fpasswd/recommendations", {}),
        ("dot-dot id", "GET", "/users/%2e%2e/recommendations", {}),
        ("unicode id", "GET", "/users/%E3%83%A6%E3%83%BC%E3%82%B6%F0%9F%92%A5/recommendations", {}),
        ("NUL byte id", "GET", "/users/1%00/recommendations", {}),
        ("id of 129 chars", "GET", "/users/" + "9" * 129 + "/recommendations", {}),
        ("id of 8000 chars", "GET", "/users/" + "a" * 8000, {}),
        ("malformed JSON", "POST", "/explain", {"content": b'{"user": "1", "item":', **js}),
        ("empty body", "POST", "/explain", {"content": b"", **js}),
        ("JSON array", "POST", "/explain", {"json": [user, item]}),
        ("invalid UTF-8", "POST", "/explain", {"content": b'{"user": "\xff\xfe", "item": "1"}', **js}),
        ("NaN literal", "POST", "/explain", {"content": b'{"user": NaN, "item": "1"}', **js}),
        ("deeply nested JSON", "POST", "/explain", {"content": b"[" * 20000 + b"]" * 20000, **js}),
        ("user is an int", "POST", "/explain", {"json": {"user": 1, "item": item}}),
        ("user is an object", "POST", "/explain", {"json": {"user": {"$ne": None}, "item": item}}),
        ("item missing", "POST", "/explain", {"json": {"user": user}}),
        ("nulls", "POST", "/explain", {"json": {"user": None, "item": None}}),
        ("unknown item", "POST", "/explain", {"json": {"user": user, "item": "no-such-item"}}),
        ("unknown user", "POST", "/explain", {"json": {"user": "no-such-user", "item": item}}),
        ("user and liked", "POST", "/explain", {"json": {"user": user, "liked": [item], "item": item}}),
        ("neither user nor liked", "POST", "/explain", {"json": {"item": item}}),
        ("extra field", "POST", "/explain", {"json": {"user": user, "item": item, "admin": True}}),
        ("item of 200 chars", "POST", "/explain", {"json": {"user": user, "item": "i" * 200}}),
        ("1 MB string", "POST", "/explain", {"json": {"user": HUGE, "item": item}}),
        ("SQL in id", "POST", "/explain", {"json": {"user": "1' OR '1'='1", "item": item}}),
        ("text/plain body", "POST", "/explain", {"content": b"user=1&item=2", "headers": {"Content-Type": "text/plain"}}),
        ("cold start: empty liked", "POST", "/recommendations", {"json": {"liked": []}}),
        ("cold start: unknown liked", "POST", "/recommendations", {"json": {"liked": ["no-such-item"]}}),
        ("cold start: 500 liked", "POST", "/recommendations", {"json": {"liked": [item] * 500}}),
        ("cold start: liked a string", "POST", "/recommendations", {"json": {"liked": item}}),
        ("cold start: k negative", "POST", "/recommendations", {"json": {"liked": [item], "k": -3}}),
        ("search limit zero", "GET", "/items?limit=0", {}),
        ("search query of 300 chars", "GET", "/items?q=" + "q" * 300, {}),
        ("search limit not a number", "GET", "/users?limit=ten", {}),
        ("unknown item page", "GET", "/items/%F0%9F%8E%AC", {}),
        ("wrong method", "DELETE", "/explain", {}),
        ("no such route", "GET", "/admin", {}),
    ]


def run_corpus(client, user: str, item: str) -> list[dict]:
    """Send every bad request through an httpx-style client; one result row each."""
    rows = []
    for name, method, url, kwargs in bad_requests(user, item):
        r = client.request(method, url, **kwargs)
        try:
            detail = r.json().get("detail")
        except (ValueError, AttributeError):
            detail = None
        ok = 400 <= r.status_code < 500 and isinstance(detail, str) and detail.strip() != ""
        rows.append({"name": name, "status": r.status_code, "ok": ok, "detail": detail})
    return rows


def main() -> int:
    import httpx

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    args = ap.parse_args()
    with httpx.Client(base_url=args.url, timeout=120) as client:
        user = client.get("/users", params={"limit": 1}).json()["users"][0]["user"]
        item = client.get(f"/users/{user}/recommendations", params={"k": 1}).json()["recommendations"][0]["item"]
        rows = run_corpus(client, user, item)
        healthy = client.get("/health").status_code == 200 and client.get("/ready").status_code == 200
        still_serves = client.get(f"/users/{user}/recommendations", params={"k": 3}).status_code == 200
    width = max(len(r["name"]) for r in rows)
    print(f"| {'request':<{width}} | status | message |\n|{'-' * (width + 2)}|--------|---------|")
    for r in rows:
        print(f"| {r['name']:<{width}} | {r['status']:>6} | {str(r['detail'])[:90]} |")
    bad = [r for r in rows if not r["ok"]]
    print(f"\n{len(rows)} malformed requests: {len(rows) - len(bad)} answered 4xx with a message, {len(bad)} not; "
          f"server healthy afterwards: {healthy}; still serves recommendations: {still_serves}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"rows": rows, "healthy": healthy, "still_serves": still_serves}, f, indent=2)
    return 0 if not bad and healthy and still_serves else 1


if __name__ == "__main__":
    sys.exit(main())
