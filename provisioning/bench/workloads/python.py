"""The interpreter-heavy bench workload: what installing a Python package spends its CPU
on besides compiling wheels -- parsing and byte-compiling sources -- plus pure-Python
data handling. Only python3-minimal's modules are used. Prints counts that must be the
same on every platform of one Python version."""

import os

stdlib = os.path.dirname(os.__file__)
sources = sorted(name for name in os.listdir(stdlib) if name.endswith(".py"))[:60]
for name in sources:
    with open(os.path.join(stdlib, name), "rb") as source:
        compile(source.read(), name, "exec")
records = [{"id": i, "name": f"item{i}", "tags": [str(j) for j in range(i % 7)]} for i in range(40000)]
index = {}
for record in sorted(records, key=lambda r: (len(r["tags"]), r["name"])):
    index.setdefault(len(record["tags"]), []).append(record["id"])
print(len(sources), sum(len(ids) * size for size, ids in index.items()))
