# %% [markdown]
# # featfate_sym in ten minutes
#
# A notebook-style walk through the toolkit (cells marked `# %%`; run it as a script,
# `python numerics/tutorial.py`, or open it as a notebook in an editor that reads the
# percent format).  The test suite executes it (`tests/test_tutorial.py`), with a smaller
# simulation, so every line below works.
#
# 1. a derived result: formula, status, derivation;
# 2. its value on a grid, as a labelled array;
# 3. the finite networks simulated under several protocols (fine-tuning only the first
#    layer among them), and compared with the theory by a stated test;
# 4. a phase diagram;
# 5. a new protocol, added as one entry.

# %%
import math
import os

import numpy as np

import featfate_sym as ff

#: replicates of the simulations (the test suite sets fewer)
REPLICATES = int(os.environ.get("TUTORIAL_REPLICATES", "40"))

# %% [markdown]
# ## 1. A derived result
# Every result has a stable key, parameters with domains, a status (source and
# exactness) and the steps SymPy took.  In a notebook, `ft` alone shows the formula.

# %%
ft = ff.get("ft.transferability_exact")
print(ft.title)
print("status:", ft.status.value)
print("parameters:", ", ".join(f"{p.name}: {p.domain_text()}" for p in ft.params))
print("steps:", len(ft.steps), "- the first:", ft.steps[0].text)

# %% [markdown]
# ## 2. Values, on a grid
# `ff.theory` evaluates a result on the outer grid of its array-valued parameters and
# returns an `xarray.DataArray` labelled with them, and with what the value means.

# %%
grid = ff.theory("ft.transferability_exact", gamma=np.linspace(0.05, 0.95, 10),
                 theta=np.array([0.0, math.pi / 4, math.pi / 3]), sigma=1.0, L=3)
print(grid.dims, grid.shape, grid.attrs["status"])
print(grid.sel(theta=0.0).values.round(3))
# the paper's form takes the null-space scale c = 1; with noise the exact value differs
paper = ff.get("ft.transferability").evaluate(gamma=0.5, theta=math.pi / 4)
print("paper form:", round(paper, 4), " exact, L = 3, sigma = 1:",
      round(ft.evaluate(gamma=0.5, theta=math.pi / 4, sigma=1.0, L=3), 4))

# %% [markdown]
# ## 3. Simulate the networks and compare
# `ff.simulate` runs a list of protocols (here the paper's three and fine-tuning of the
# first layer alone, `fine_tune[1]`) on shared target sets and returns an
# `xarray.Dataset` laid out as a sweep: a dimension per array-valued parameter, then
# `replicate`.  `ff.compare(key, simulation)` finds, in the protocol table, the variable
# the key predicts and where the prediction holds, and tests the simulated mean against
# it by a Student-t test, Bonferroni over the points, at a stated false-alarm rate.
# Both results compared here are exact at the simulated n and d, so no finite-size
# allowance is needed.  The first layer alone ends at `X^+ y + (I - P) beta_s` for any
# noise, so the paper's c = 1 formula is exact for it, while all-layer fine-tuning
# rescales the null space (they differ at sigma = 1).

# %%
d, theta = 40, math.pi / 4
sim = ff.simulate(["scratch", "linear_transfer", "fine_tune", "fine_tune[1]"], replicates=REPLICATES, seed=0,
                  gamma=0.5, theta=theta, sigma=np.array([0.0, 1.0]), d=d, L=2, solver="whitened")
print(dict(sim.sizes), "variables:", ", ".join(v for v in sim.data_vars if v.startswith(("risk_", "T_"))))
for key in ("lt.risk_finite", "ft.transferability_first_layer"):
    check = ff.compare(key, sim)
    print(check[["theory", "mean", "se", "z", "critical"]].to_dataframe()[["theory", "mean", "se", "z", "critical"]].round(4))
    print(f"compare {key} ({check.attrs['variable']}, false-alarm rate {check.attrs['false_alarm_rate']:g} per point): "
          f"{'passed' if check.attrs['all_passed'] else 'FAILED'}")
noisy = sim.sel(sigma=1.0)
print("sigma = 1: T_ft", round(float(noisy["T_ft"].mean()), 4), " T_ft1", round(float(noisy["T_ft1"].mean()), 4),
      " limits:", round(ft.evaluate(gamma=0.5, theta=theta, sigma=1.0, L=2), 4),
      round(ff.get("ft.transferability_first_layer").evaluate(gamma=0.5, theta=theta, sigma=1.0), 4))

# %% [markdown]
# ## 4. A phase diagram
# The sign of the linear-transfer transferability over (theta, gamma): where
# pretraining and refitting only the readout helps.

# %%
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

lt = ff.theory("lt.transferability", gamma=np.linspace(0.05, 2.0, 80),
               theta=np.linspace(0.0, math.pi / 2, 60), sigma=0.2, lam=0.0)
fig, ax = plt.subplots(figsize=(4, 3))
ax.pcolormesh(lt.theta / (math.pi / 2), lt.gamma, np.sign(np.clip(lt.values, -1e3, 1e3)),
              cmap="RdBu", shading="auto")
ax.set_xlabel(r"$\theta/(\pi/2)$")
ax.set_ylabel(r"$\gamma$")
ax.set_title(r"sign of $T_{lt}$, $\sigma = 0.2$")
figure = os.environ.get("TUTORIAL_FIGURE")
if figure:
    fig.savefig(figure, dpi=100)
plt.close(fig)

# %% [markdown]
# ## 5. Add a protocol
# A protocol is one entry: how it trains (a function of the trial: teachers, the shared
# target data, the pretrained network, the options) and which results predict its
# observables.  Here: training from scratch by ridge regression in closed form, whose
# proportional-limit risk the registry already derives (`scratch.risk_ridge`).  Once
# registered it runs in `ff.simulate` beside the others, and `ff.compare`, the report's
# agreement table and the sweeps' tables find its prediction in the table.

# %%
import torch  # noqa: E402

from featfate_sym import protocols  # noqa: E402


def ridge_run(trial):
    """beta = (X^T X / n + lam I)^(-1) X^T y / n on the shared target data."""
    data = trial.target
    eye = torch.eye(data.sxy.shape[-1], dtype=torch.float64)
    beta = torch.linalg.solve(data.sxx + trial.ridge * eye, data.sxy.unsqueeze(-1)).squeeze(-1)
    return protocols.ProtocolRun(beta)


ridge = protocols.register_protocol(protocols.Protocol(
    name="ridge_scratch", tag="rs", title="Ridge regression from scratch", layers="one linear layer, closed form",
    pretrained=False, regime="ridge lam on the target data alone", run=ridge_run,
    predictions=(protocols.Prediction("scratch.risk_ridge", "risk", "limit",
                                      ("gamma", "sigma", "lam"), source="any"),),
))
# a limit form at finite d: d = 400 puts its O(1/d) bias far inside the test's band
ridge_sim = ff.simulate([ridge], replicates=REPLICATES, seed=1, gamma=np.array([0.5, 2.0]), sigma=0.5,
                        lam=0.1, d=400)
check = ff.compare("scratch.risk_ridge", ridge_sim)
print(check[["theory", "mean", "se", "z"]].to_dataframe()[["theory", "mean", "se", "z"]].round(4))
print(f"compare scratch.risk_ridge ({check.attrs['variable']}): {'passed' if check.attrs['all_passed'] else 'FAILED'}")
