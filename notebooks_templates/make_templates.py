"""Write the scenario notebooks of this directory (outputs empty) with nbformat.

    python notebooks_templates/make_templates.py

Edit the cells here, not in the .ipynb files: every template is executed by
tests/integration/test_notebooks.py against a live gateway.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
KERNEL = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def md(text: str) -> nbformat.NotebookNode:
    return new_markdown_cell(text.strip())


def code(text: str) -> nbformat.NotebookNode:
    return new_code_cell(text.strip())


GETTING_STARTED = [
    md("""
# Getting started: usable but invisible

This sandbox lets you compute on protected public-sector data **without ever seeing a
record**. You never get rows, only aggregates (counts, sums, means, quantiles,
histograms) with calibrated noise added (differential privacy). Every answer costs part
of a *privacy budget* (epsilon) granted to you for a purpose, and every call is written to
an audit log.

This notebook walks through the catalog, developing on dummy rows and applying for access.
"""),
    code("""
from sandbox import connect, GrantRequired

gw = connect()  # the URL and your token come from the sandbox environment
gw
"""),
    md("""
## 1. The catalog

Each dataset has an access level: `open` (a grant is issued automatically on first use),
`conditional` (an admin approves your application) or `restricted` (as conditional, and
each query is reviewed before its answer is released).
"""),
    code("""
catalog = gw.datasets()
catalog[["title", "domain", "access", "epsilon_left"]]
"""),
    code("""
flights = gw.dataset("flights")
flights  # title, description and the public schema
"""),
    code("""
flights.schema  # types, public bounds and categories: this is all that is public
"""),
    md("""
## 2. Develop on dummy rows (free)

`dummy()` returns synthetic rows drawn from the public schema alone: right columns,
types and ranges, **meaningless values**. Use them to write and debug your pandas code;
nothing is spent and nothing about the real data is revealed.
"""),
    code("""
dummy = flights.dummy(500)
dummy.head()
"""),
    code("""
# the analysis you want, written against the dummy rows
dummy.groupby("origin")["dep_delay"].agg(["count", "mean"])
"""),
    md("""
## 3. The same analysis as a DP query: preview first

`preview()` tells you what a query would cost and how accurate its answer would be
(the half-width of the 95% noise interval). It spends nothing, even before you have a grant.
Counts, sums and histograms have an estimate before release; a mean's accuracy depends
on the size of its group, so it is reported with the released answer instead.
"""),
    code("""
plan = flights.preview(count=True, mean="dep_delay", by=["origin"], epsilon=0.5)
plan
"""),
    md("""
## 4. Apply for access

`flights` is *conditional*: running the query now is refused until an admin approves a
data-use application.
"""),
    code("""
try:
    flights.count(by=["origin"], epsilon=0.1)
except GrantRequired as exc:
    print("not yet:", exc.message)
"""),
    code("""
application = gw.request_access(
    "flights", epsilon=2.0, days=30,
    purpose="Study of departure delays by airport and month for a transport policy report",
)
application
"""),
    code("""
gw.requests()[["id", "dataset", "status", "epsilon", "days"]]
"""),
    md("""
## 5. Open data needs no application

`exam` is open: the first query creates your grant with the default budget. Every
result is a pandas DataFrame with an `_accuracy` column next to each noisy value, and
the budget left is printed after the call (and kept in `result.attrs`).
"""),
    code("""
exam = gw.dataset("exam")
pupils = exam.count(by=["sex"], epsilon=0.1)
pupils
"""),
    code("""
pupils.attrs["epsilon_charged"], pupils.attrs["budget"]["epsilon_remaining"]
"""),
    code("""
gw.grants()[["dataset", "status", "epsilon_total", "epsilon_spent", "epsilon_remaining"]]
"""),
]

TRANSPORT = [
    md("""
# Transport: departure delays by airport and month

NYC departing flights 2013 (`flights`, conditional access). This study needs an approved
grant on `flights`; check what is left on it before spending.

Plan of the budget (epsilon): 1.0 for delays by airport and month, 0.3 for the summer
comparison, 0.3 for the distribution of delays, 0.2 for carriers.
"""),
    code("""
import matplotlib.pyplot as plt
from sandbox import connect

gw = connect()
flights = gw.dataset("flights")
gw.grants().query("dataset == 'flights'")[["status", "epsilon_total", "epsilon_remaining", "expires_at"]]
"""),
    md("""
## How accurate would the monthly table be?

36 cells (3 airports x 12 months). `preview` is free: check the noise before spending.
"""),
    code("""
flights.preview(count=True, mean="dep_delay", by=["origin", "month"], epsilon=1.0)
"""),
    code("""
monthly = flights.query(count=True, mean="dep_delay", by=["origin", "month"], epsilon=1.0)
monthly.head(6)
"""),
    code("""
fig, ax = plt.subplots(figsize=(8, 4))
for origin, rows in monthly.sort_values("month").groupby("origin"):
    ax.errorbar(rows["month"], rows["mean_dep_delay"], yerr=rows["mean_dep_delay_accuracy"],
                marker="o", capsize=3, label=origin)
ax.set_xlabel("month (2013)")
ax.set_ylabel("mean departure delay (min)")
ax.set_title("Mean departure delay by airport (DP, 95% noise intervals)")
ax.set_xticks(range(1, 13))
ax.legend()
plt.show()
"""),
    md("""
## Summer against the rest of the year

Filters are written as in SQL: `month between 6 and 8`, `origin in ('JFK', 'LGA')`, joined
with `and`.
"""),
    code("""
summer = flights.mean("dep_delay", by=["origin"], where="month between 6 and 8", epsilon=0.15)
rest = flights.mean("dep_delay", by=["origin"], where="month >= 9", epsilon=0.15)
comparison = summer.merge(rest, on="origin", suffixes=("_summer", "_autumn"))
comparison["difference"] = comparison["mean_dep_delay_summer"] - comparison["mean_dep_delay_autumn"]
comparison
"""),
    md("## The distribution of delays (public bins)"),
    code("""
delays = flights.histogram("dep_delay", bins=[-60, 0, 15, 60, 180, 600], epsilon=0.3)
ax = delays.plot.bar(x="bin", y="count", yerr="count_accuracy", legend=False, figsize=(7, 3))
ax.set_ylabel("flights")
ax.set_title("Departure delay (minutes), DP counts")
plt.show()
delays
"""),
    md("""
## The same in DP SQL

Carriers are not a public list, so only carriers whose noisy count clears a threshold are
released (this spends a little delta as well).
"""),
    code("""
carriers = gw.sql(
    "SELECT carrier, COUNT(*) AS flights, AVG(dep_delay) AS mean_delay "
    "FROM flights GROUP BY carrier ORDER BY flights DESC",
    epsilon=0.2,
)
carriers.head(10)
"""),
    code("""
gw.grants().query("dataset == 'flights'")[["epsilon_spent", "epsilon_remaining"]]
"""),
]

EDUCATION = [
    md("""
# Education: school gender and exam results, choosing epsilon before spending

`exam` (open data): normalised GCSE scores of 4,059 inner-London pupils in 65 schools.
Two questions:

1. Do girls', boys' and mixed schools take in pupils of different ability (verbal
   reasoning band at intake)?
2. Do their pupils score differently at the exam?

`preview` costs nothing, so for question 1 we search for the **smallest epsilon** that
counts each (school gender, band) cell to within **±15 pupils** (95% noise interval),
then spend exactly that.
"""),
    code("""
import matplotlib.pyplot as plt
import pandas as pd
from sandbox import connect

gw = connect()
exam = gw.dataset("exam")
exam.schema
"""),
    code("""
TARGET = 15  # pupils: half-width of the 95% noise interval on each count
candidates = [0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.8]
rows = []
for eps in candidates:
    p = exam.preview(count=True, by=["schgend", "vr"], epsilon=eps)
    rows.append({"epsilon": eps, "count_accuracy": p.accuracy["count"]})
plan = pd.DataFrame(rows)
plan["meets_target"] = plan["count_accuracy"] <= TARGET
plan
"""),
    code("""
fig, ax = plt.subplots(figsize=(6, 3))
ax.loglog(plan["epsilon"], plan["count_accuracy"], marker="o")
ax.axhline(TARGET, color="red", linestyle="--", label=f"target ±{TARGET} pupils")
ax.set_xlabel("epsilon spent")
ax.set_ylabel("95% noise half-width (pupils)")
ax.legend()
plt.show()
"""),
    code("""
chosen = float(plan.loc[plan["meets_target"], "epsilon"].min())
print(f"spending epsilon {chosen} for counts within ±{TARGET} pupils")
intake = exam.count(by=["schgend", "vr"], epsilon=chosen)
assert (intake["count_accuracy"] <= TARGET).all()
intake.head()
"""),
    code("""
# shares within each school gender: post-processing, free
table = intake.pivot(index="schgend", columns="vr", values="count").clip(lower=0)
shares = table.div(table.sum(axis=1), axis=0)
ax = shares.plot.bar(stacked=True, figsize=(6, 3), title="Intake verbal-reasoning band (DP)")
ax.set_ylabel("share of pupils")
plt.show()
shares.round(3)
"""),
    md("""
## Exam scores by school gender

A mean is a noisy sum over a noisy count, so its accuracy depends on how many pupils are
in the group: the preview cannot give it before release (it shows *no estimate*), but
each released mean carries its `_accuracy`. The counts just released tell us the groups
have hundreds of pupils, so epsilon 0.4 should be ample.
"""),
    code("""
exam.preview(mean="normexam", by=["schgend"], epsilon=0.4)
"""),
    code("""
scores = exam.mean("normexam", by=["schgend"], epsilon=0.4)
ax = scores.plot.bar(x="schgend", y="mean_normexam", yerr="mean_normexam_accuracy",
                     legend=False, figsize=(5, 3), capsize=4)
ax.set_ylabel("mean normalised exam score")
ax.set_title("Exam score by school gender (DP, 95% noise intervals)")
plt.show()
scores
"""),
    code("""
gw.grants().query("dataset == 'exam'")[["epsilon_total", "epsilon_spent", "epsilon_remaining"]]
"""),
]

CREDIT = [
    md("""
# Enterprise: a credit-risk profile on restricted data

`credit` is **restricted**: besides an approved grant, every query is held as
`pending_review` until an admin releases it; only then is it computed and charged.
Ask few, coarse questions: each one waits for a person.

The client waits for the review by default (polling with backoff). You can also submit
without waiting and collect the answer later, even from another notebook.
"""),
    code("""
import matplotlib.pyplot as plt
from sandbox import connect

gw = connect()
credit = gw.dataset("credit")
credit
"""),
    code("""
gw.grants().query("dataset == 'credit'")[["status", "epsilon_total", "epsilon_remaining"]]
"""),
    md("## Develop on dummy rows first (free, no review)"),
    code("""
dummy = credit.dummy(300)
profile_code = dummy.groupby("status")[["income", "debt"]].mean()
profile_code
"""),
    code("""
credit.preview(count=True, mean=["income", "debt"], by=["status"], epsilon=0.6)
"""),
    md("""
## Submit, then collect after review

`wait=False` returns a `PendingQuery` at once; `.result()` waits for the reviewer.
"""),
    code("""
pending = credit.query(count=True, mean=["income", "debt"], by=["status"], epsilon=0.6,
                       wait=False)
pending
"""),
    code("""
profile = pending.result(timeout=600)
profile
"""),
    md("""
## Default rate by prior records (waits inline)

Post-processing a released answer (here: a ratio) costs nothing more.
"""),
    code("""
records = credit.count(by=["records", "status"], epsilon=0.4, timeout=600)
rates = records.pivot(index="records", columns="status", values="count")
rates["bad_rate"] = rates["bad"] / (rates["bad"] + rates["good"])
rates
"""),
    code("""
ages = credit.histogram("age", bins=[18, 25, 35, 45, 55, 65, 80], by=["status"], epsilon=0.4,
                        timeout=600)
wide = ages.pivot(index="bin", columns="status", values="count")
wide.plot.bar(figsize=(7, 3), title="Applicants by age band and outcome (DP counts)")
plt.show()
"""),
    code("""
gw.queries(dataset="credit")[["id", "status", "epsilon", "reviewed_by", "created_at"]]
"""),
]

TEMPLATES = {
    "01_getting_started.ipynb": GETTING_STARTED,
    "02_transport_delays.ipynb": TRANSPORT,
    "03_education_preview.ipynb": EDUCATION,
    "04_credit_risk_restricted.ipynb": CREDIT,
}


def write_all(directory: Path = HERE) -> list[Path]:
    written = []
    for name, cells in TEMPLATES.items():
        notebook = new_notebook(cells=cells, metadata={"kernelspec": KERNEL,
                                                       "language_info": {"name": "python"}})
        for index, cell in enumerate(notebook.cells):
            cell["id"] = f"{name[:2]}-{index:02d}"
        nbformat.validate(notebook)
        path = directory / name
        nbformat.write(notebook, path)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_all():
        print(path)
