"""Scrapes a segmentd /metrics endpoint and parses it with prometheus_client's parser.

    python3 scrape_metrics.py URL [SCRAPES]

Scrapes SCRAPES times (default 1), parsing each; prints the last scrape's samples as JSON
lines: {"name": …, "labels": {…}, "value": …}, after a first line {"scrapes": N}.
Exits non-zero if a scrape fails or does not parse.
"""
import json
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def scrape(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        if response.status != 200:
            raise SystemExit(f"{url}: HTTP {response.status}")
        content_type = response.headers.get("Content-Type", "")
        if not content_type.startswith("text/plain"):
            raise SystemExit(f"{url}: Content-Type {content_type!r}")
        text = response.read().decode("utf-8")
    samples = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.append({"name": sample.name, "labels": sample.labels, "value": sample.value, "type": family.type})
    return samples


def main():
    url = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    samples = []
    for _ in range(count):
        samples = scrape(url)
    print(json.dumps({"scrapes": count}))
    for sample in samples:
        print(json.dumps(sample))


if __name__ == "__main__":
    main()
