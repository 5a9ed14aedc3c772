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
# 3. the finite networks simulated, and compared with the theory by a stated test;
# 4. a phase diagram;
# 5. fine-tuning a chosen set of layers, a protocol beyond the paper.

# %%
import math
import os

import numpy as np

import featfate_sym as ff
from featfate_sym.stats import compare

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
print("parameters:", ", ".join(f"{p.name} in {p.domain_text()}" for p in ft.params))
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
# Pretraining, scratch, linear transfer and fine-tuning run on shared target sets.
# The comparison is a Student-t test of the simulated mean against the theory, at a
# stated false-alarm rate.

# %%
from featfate_sym.simulation import simulate_transfer  # noqa: E402

d, n, theta, sigma = 40, 20, math.pi / 4, 0.5
out = simulate_transfer(replicates=REPLICATES, dim=d, depth=2, n_samples=n, theta=theta,
                        noise_std=sigma, seed=0)
beta_t = out.teachers.target
risk_lt = ((out.beta_lt - beta_t) ** 2).sum(-1).numpy()
# lt.risk_finite is exact at finite n (no allowance): E R_lt = sin^2 + (sigma^2 + sin^2)/(n - 2)
print(compare(ff.get("lt.risk_finite").evaluate(n=n, theta=theta, sigma=sigma), risk_lt, alpha=1e-3))
t_ft = (((out.beta_sc - beta_t) ** 2).sum(-1) - ((out.beta_ft - beta_t) ** 2).sum(-1)).numpy()
print("T_ft simulated", round(float(t_ft.mean()), 4), "limit", round(ft.evaluate(gamma=n / d, theta=theta, sigma=sigma, L=2), 4))

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
# ## 5. Fine-tune only the first layer
# `fine_tune(..., layers=(1,))` trains the input layer alone.  Its end point is
# `X^+ y + (I - P) beta_s` for any noise, so the paper's c = 1 formula is exact for it
# (`ft.transferability_first_layer`), while all-layer fine-tuning rescales the null space.

# %%
import torch  # noqa: E402

from featfate_sym.simulation import tasks  # noqa: E402
from featfate_sym.simulation.deep_linear import EngineOptions, fine_tune, pretrain  # noqa: E402

gen = torch.Generator().manual_seed(1)
teachers = tasks.make_teachers(REPLICATES, d, theta, gen)
target = tasks.sample_regression(teachers.target, n, 1.0, gen)
options = EngineOptions(solver="whitened")
pre, _ = pretrain(tasks.population_data(teachers.source), 2, gen, options)
first, _ = fine_tune(pre, target, options, layers=(1,))
beta = (first[0] @ first[1].unsqueeze(-1)).squeeze(-1)
t_first = (((target.minimiser - teachers.target) ** 2).sum(-1) - ((beta - teachers.target) ** 2).sum(-1)).numpy()
first_layer = ff.get("ft.transferability_first_layer")
print(compare(first_layer.evaluate(gamma=n / d, theta=theta, sigma=1.0), t_first, alpha=1e-3, allowance=2e-3))
