#!/usr/bin/env python3
"""Scrapes GET /metrics of a uringreplay admin listener every MS milliseconds, COUNT times at
most, from one process (scripts/ab.sh's scraper; scripts/scrape-cost.sh's load with MS 0).

    scrape.py HOST:PORT MS COUNT

Each scrape reads the whole answer. The connection is kept while the server keeps it; the
admin port closes after each answer, so http.client reconnects for the next. Exits 1 on an
answer other than 200 or when the server goes away.
"""
import http.client
import sys
import time


def main() -> int:
    host, port = sys.argv[1].rsplit(":", 1)
    period = float(sys.argv[2]) / 1000
    count = int(sys.argv[3])
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    next_at = time.monotonic()
    for _ in range(count):
        try:
            conn.request("GET", "/metrics")
            resp = conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException):
            return 1
        if resp.status != 200:
            return 1
        if resp.will_close:
            conn.close()
        if period > 0:
            next_at += period
            time.sleep(max(0.0, next_at - time.monotonic()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
