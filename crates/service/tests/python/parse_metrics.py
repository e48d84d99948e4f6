"""Reads Prometheus text from stdin with the Prometheus project's own parser
(PyPI's prometheus-client) and prints every sample as a JSON list of
[name, labels, value], so that a test checks the format as a scraper reads it.
"""

import json
import sys

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    sys.stderr.write(
        "the Python package prometheus-client is not installed: "
        "`python3 -m pip install prometheus-client` (.ci/run installs it)\n"
    )
    sys.exit(3)

samples = []
types = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    types[family.name] = family.type
    for sample in family.samples:
        samples.append([sample.name, sample.labels, sample.value])
json.dump({"types": types, "samples": samples}, sys.stdout)
