"""Write the scenario notebooks (outputs empty) with nbformat, in English and Chinese.

    python notebooks_templates/make_templates.py     # -> en/*.ipynb and zh/*.ipynb

Edit the cells here, not in the .ipynb files: every template is executed by
tests/integration/test_notebooks.py against a live gateway.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
KERNEL = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
LANGUAGES = ("en", "zh")  # folders; new analysts get the folder of their language (the spawner)
Cell = dict[str, nbformat.NotebookNode]

# The Chinese code cells are the English ones with these comments and texts translated
# (plot labels stay English: the sandbox has no CJK font).
ZH_CODE = {
    '# the URL and your token come from the sandbox environment':
        '# 网关地址和您的令牌来自沙箱环境',
    '# title, description and the public schema':
        '# 标题、说明和公开的数据结构',
    '# types, public bounds and categories: this is all that is public':
        '# 类型、公开的取值范围和类别：公开的只有这些',
    '# the analysis you want, written against the dummy rows':
        '# 您想做的分析，先在模拟数据上编写',
    'print("not yet:", exc.message)':
        'print("暂不可用：", exc.message)',
    '# pupils: half-width of the 95% noise interval on each count':
        '# 学生人数：每个计数的 95% 噪声区间半宽',
    'print(f"spending epsilon {chosen} for counts within ±{TARGET} pupils")':
        'print(f"花费 epsilon {chosen}，计数误差在 ±{TARGET} 名学生以内")',
    '# shares within each school gender: post-processing, free':
        '# 各类学校内部的比例：后处理，免费',
    '# shows the current status of the review':
        '# 显示审核的当前状态',
    '# what is left on flights over all your active grants':
        '# 您在 flights 上所有有效授权的剩余预算',
    '# the fix found on synthetic rows':
        '# 在合成数据上发现的修正',
    'print("rows where the loan exceeds the price:",':
        'print("贷款额超过价格的行数：",',
    'print("measured marginals:",':
        'print("测量的边际分布：",',
    'purpose="Study of departure delays by airport and month for a transport policy report",':
        'purpose="为交通政策报告研究各机场、各月份的起飞延误情况",',
}


def md(en: str, zh: str) -> Cell:
    return {"en": new_markdown_cell(en.strip()), "zh": new_markdown_cell(zh.strip())}


def code(text: str) -> Cell:
    zh = text
    for english, chinese in ZH_CODE.items():
        zh = zh.replace(english, chinese)
    return {"en": new_code_cell(text.strip()), "zh": new_code_cell(zh.strip())}


GETTING_STARTED = [
    md("""
# Getting started: usable but invisible

This sandbox lets you compute on protected public-sector data **without ever seeing a
record**. You never get rows, only aggregates (counts, sums, means, quantiles,
histograms) with calibrated noise added (differential privacy). Every answer costs part
of a *privacy budget* (epsilon) granted to you for a purpose, and every call is written to
an audit log.

This notebook walks through the catalog, developing on dummy rows and applying for access.
""", """
# 入门：可用不可见

在这个沙箱里，您可以对受保护的公共数据进行计算，**却永远看不到任何一条记录**。您拿不到原始数据行，
只能得到加入了校准噪声的聚合结果（计数、求和、均值、分位数、直方图），即差分隐私。每个结果都会消耗
为某一用途授予您的一部分*隐私预算*（epsilon），每次调用都会写入审计日志。

本笔记本介绍数据目录、如何用模拟数据开发，以及如何申请访问。
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
""", """
## 1. 数据目录

每个数据集都有访问级别：`open`（开放：首次使用时自动授权）、`conditional`（有条件开放：须由管理员批准
您的申请）或 `restricted`（受限：同有条件开放，且每次查询的结果须经审核后才发布）。
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
""", """
## 2. 用模拟数据开发（免费）

`dummy()` 返回仅根据公开的数据结构生成的模拟数据行：列、类型和取值范围都正确，**但数值没有意义**。
用它们编写和调试 pandas 代码；不消耗预算，也不泄露真实数据的任何信息。
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
""", """
## 3. 用差分隐私查询做同样的分析：先预览

`preview()` 告诉您一次查询将花费多少预算、结果有多准确（95% 噪声区间的半宽）。即使还没有授权，
预览也不消耗任何预算。计数、求和与直方图在发布前就有精度估计；均值的精度取决于分组大小，
因此在结果发布时一并给出。
"""),
    code("""
plan = flights.preview(count=True, mean="dep_delay", by=["origin"], epsilon=0.5)
plan
"""),
    md("""
## 4. Apply for access

`flights` is *conditional*: running the query now is refused until an admin approves a
data-use application.
""", """
## 4. 申请访问

`flights` 是*有条件开放*的数据集：在管理员批准数据使用申请之前，查询会被拒绝。
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
""", """
## 5. 开放数据无需申请

`exam` 是开放数据：第一次查询会以默认预算自动创建您的授权。每个结果都是 pandas DataFrame，
每个带噪声的数值旁有一列 `_accuracy`；调用后会显示剩余预算（也保存在 `result.attrs` 中）。
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
""", """
# 交通：各机场、各月份的起飞延误

2013 年纽约出港航班（`flights`，有条件开放）。本研究需要 `flights` 上已批准的授权；花费预算之前先看看还剩多少。

预算（epsilon）计划：按机场和月份的延误 1.0，夏季对比 0.3，延误分布 0.3，航空公司 0.2。
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
""", """
## 月度表格会有多准确？

共 36 个单元格（3 个机场 × 12 个月）。`preview` 免费：花费之前先检查噪声。
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
""", """
## 夏季与一年中其他时间的对比

过滤条件的写法与 SQL 相同：`month between 6 and 8`、`origin in ('JFK', 'LGA')`，用 `and` 连接。
"""),
    code("""
summer = flights.mean("dep_delay", by=["origin"], where="month between 6 and 8", epsilon=0.15)
rest = flights.mean("dep_delay", by=["origin"], where="month >= 9", epsilon=0.15)
comparison = summer.merge(rest, on="origin", suffixes=("_summer", "_autumn"))
comparison["difference"] = comparison["mean_dep_delay_summer"] - comparison["mean_dep_delay_autumn"]
comparison
"""),
    md("## The distribution of delays (public bins)", "## 延误的分布（公开的分箱）"),
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
""", """
## 用 DP SQL 做同样的事

航空公司不是公开列表，因此只发布噪声计数超过阈值的航空公司（这也会消耗少量 delta）。
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
    code("""
flights.budget_left()  # what is left on flights over all your active grants
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
""", """
# 教育：学校性别类型与考试成绩，在花费之前选择 epsilon

`exam`（开放数据）：伦敦内城 65 所学校 4,059 名学生的标准化 GCSE 成绩。两个问题：

1. 女校、男校和混合学校招收的学生入学能力（语言推理等级）是否不同？
2. 这些学校学生的考试成绩是否不同？

`preview` 不花费任何预算，因此对于问题 1，我们寻找能使每个（学校性别类型，等级）单元格的计数
精确到 **±15 名学生**以内（95% 噪声区间）的**最小 epsilon**，然后只花费这么多。
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
""", """
## 各类学校的考试成绩

均值是带噪声的总和除以带噪声的计数，因此其精度取决于组内人数：预览无法在发布前给出（显示*无估计*），
但每个已发布的均值都带有 `_accuracy`。刚发布的计数表明各组都有数百名学生，所以 epsilon 0.4 应该足够。
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

A query returns a `PendingQuery` at once: showing it shows the review's status, and
`.result(timeout=...)` waits for the answer (polling with backoff). You can also collect
the answer later, even from another notebook, with `gw.query_result(id)`.
""", """
# 企业：基于受限数据的信用风险画像

`credit` 是**受限**数据：除了已批准的授权外，每次查询都以 `pending_review` 状态等待，直到管理员发布；
只有发布后才会计算并扣除预算。请少问、问得粗一些：每个问题都要等人审核。

查询会立即返回一个 `PendingQuery`：显示它即可看到审核状态，`.result(timeout=...)` 等待结果
（以退避方式轮询）。您也可以稍后（甚至在另一个笔记本中）用 `gw.query_result(id)` 取回结果。
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
    md("## Develop on dummy rows first (free, no review)", "## 先用模拟数据开发（免费，无需审核）"),
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

The query returns at once; nothing is charged until an admin releases it.
""", """
## 提交，审核后取回结果

查询立即返回；在管理员发布之前不扣除任何预算。
"""),
    code("""
pending = credit.query(count=True, mean=["income", "debt"], by=["status"], epsilon=0.6)
pending  # shows the current status of the review
"""),
    code("""
profile = pending.result(timeout=600)
profile
"""),
    md("""
## Default rate by prior records (waits inline)

`timeout=600` waits here for the review, up to ten minutes. Post-processing a released
answer (here: a ratio) costs nothing more.
""", """
## 按既往记录统计的违约率（在此等待）

`timeout=600` 表示在这里等待审核，最多十分钟。对已发布结果做后处理（这里是求比率）不再消耗预算。
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

SYNTHETIC = [
    md("""
# Enterprise: build a pipeline on DP synthetic rows, then fit the model on the real data

Dummy rows (`credit.dummy`) come from the policy alone: every column is independent, so a
pipeline run on them tells you nothing about the relations you want to model.
**DP synthetic rows** are fitted on the real data by the gateway (OpenDP's MST or AIM) and
keep the main correlations, at a privacy cost: write and debug the pipeline on them, then
fit the **DP regression** through the gateway and compare.

`credit` is restricted: each release below waits for an admin's review.
""", """
# 企业：先在差分隐私合成数据上搭建流程，再在真实数据上拟合模型

模拟数据（`credit.dummy`）只来自策略：各列相互独立，在其上运行的流程无法反映您想建模的关系。
**差分隐私合成数据**由网关在真实数据上拟合（OpenDP 的 MST 或 AIM），保留了主要的相关性，
但要消耗隐私预算：先在合成数据上编写和调试流程，再通过网关拟合**差分隐私回归**并进行比较。

`credit` 是受限数据：下面的每次发布都要等待管理员审核。
"""),
    code("""
import numpy as np
import pandas as pd
from sandbox import connect

gw = connect()
credit = gw.dataset("credit")
COLUMNS = ["status", "records", "price", "amount"]
credit.preview_synthetic(rows=2000, columns=COLUMNS, epsilon=1.0, method="mst")
"""),
    md("## Synthetic rows (waits for the review)", "## 合成数据（等待审核）"),
    code("""
synth = credit.synthetic(rows=2000, columns=COLUMNS, epsilon=1.0, method="mst", timeout=900)
print(synth.attrs["note"])
print("measured marginals:", [m["columns"] for m in synth.attrs["marginals"]])
synth.head()
"""),
    md("""
## Build and debug the pipeline on them

Synthetic rows are not real rows: combinations that no applicant had can appear. A check
that fails here tells you where the pipeline must be robust.
""", """
## 在合成数据上搭建并调试流程

合成数据不是真实数据：可能出现没有任何申请人具有的组合。在这里失败的检查告诉您流程在哪里需要更稳健。
"""),
    code("""
def prepare(frame: pd.DataFrame) -> pd.DataFrame:
    df = frame.dropna(subset=["price", "amount"]).astype({"price": float, "amount": float})
    df["share_financed"] = df["amount"] / df["price"]
    return df

draft = prepare(synth)
print("rows where the loan exceeds the price:", int((draft["share_financed"] > 1).sum()))
"""),
    code("""
def prepare(frame: pd.DataFrame) -> pd.DataFrame:
    df = frame.dropna(subset=["price", "amount"]).astype({"price": float, "amount": float})
    df = df[df["amount"] <= df["price"]]  # the fix found on synthetic rows
    df["share_financed"] = df["amount"] / df["price"]
    return df

def fit_line(df: pd.DataFrame) -> tuple[float, float]:
    slope, intercept = np.polyfit(df["price"], df["amount"], 1)
    return float(slope), float(intercept)

pipeline_slope, pipeline_intercept = fit_line(prepare(synth))
pipeline_slope, pipeline_intercept
"""),
    md("""
## Fit the DP regression on the real data (waits for the review)

The gateway fits OpenDP's DP linear regression (Theil-Sen) on the real rows and returns
only its coefficients; `predict` runs here.
""", """
## 在真实数据上拟合差分隐私回归（等待审核）

网关在真实数据上拟合 OpenDP 的差分隐私线性回归（Theil-Sen），只返回系数；`predict` 在这里运行。
"""),
    code("""
credit.preview_linear_regression(y="amount", x=["price"], epsilon=0.5)
"""),
    code("""
model = credit.linear_regression(y="amount", x=["price"], epsilon=0.5, timeout=900)
model
"""),
    code("""
comparison = pd.DataFrame({
    "slope": [pipeline_slope, float(model.coef_[0])],
    "intercept": [pipeline_intercept, model.intercept_],
}, index=["OLS on DP synthetic rows", "DP regression on the real data"])
comparison
"""),
    code("""
checked = prepare(synth)
checked["predicted_amount"] = model.predict(checked[["price"]])
checked[["price", "amount", "predicted_amount"]].head()
"""),
]

SCENARIOS = {
    "01_getting_started.ipynb": GETTING_STARTED,
    "02_transport_delays.ipynb": TRANSPORT,
    "03_education_preview.ipynb": EDUCATION,
    "04_credit_risk_restricted.ipynb": CREDIT,
    "05_credit_synthetic_model.ipynb": SYNTHETIC,
}
# "en/01_getting_started.ipynb" -> its cells, for every language
TEMPLATES = {f"{lang}/{name}": [cell[lang] for cell in cells]
             for lang in LANGUAGES for name, cells in SCENARIOS.items()}


def write_all(directory: Path = HERE) -> list[Path]:
    written = []
    for name, cells in TEMPLATES.items():
        notebook = new_notebook(cells=cells, metadata={"kernelspec": KERNEL,
                                                       "language_info": {"name": "python"}})
        for index, cell in enumerate(notebook.cells):
            cell["id"] = f"{name[:2]}-{Path(name).name[:2]}-{index:02d}"
        nbformat.validate(notebook)
        path = directory / name
        path.parent.mkdir(exist_ok=True)
        nbformat.write(notebook, path)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_all():
        print(path)
