"""The learned distribution estimators give, bit for bit, the numbers they gave before ask/tell.

(All but one, which gives them to rounding: see ``TO_ROUNDING``.)

``PINNED`` was computed with the code before the move to the ask/tell protocol (when each
loss stepped φ or the baseline inside it), by these very scenarios: three seeded
``vg.expectation(...).backward()`` calls with the default ``train=True``. Each row is the
loss and the gradient of a step; ``learned`` is what was learned after the three steps
(φ of the control, η and λ, the baseline's weights or running mean, and the last ‖ĝ‖²).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Normal, OneHotCategorical

import voidgrad as vg
from tests.estimators.test_score import bernoulli_cost

PINNED = {
    "lax": {
        "steps": [
            [
                1.4591769825480536,
                0.13509365674705892,
                0.5285273732127949,
                -0.8462896385827336,
                -1.1546049011610322,
                2.34691011048608,
            ],
            [
                0.896853912656255,
                -0.22480972087541712,
                -0.12546193053719515,
                -0.3500972525504436,
                -1.2509046947509117,
                1.7536107482074437,
            ],
            [
                0.6270482686363579,
                -0.1310665768502836,
                -0.14106020370954336,
                -0.507603075868132,
                -0.7072394540057376,
                0.7949249565709515,
            ],
        ],
        "learned": [
            0.3929299081741191,
            -0.33959950810412426,
            -0.16553940682464013,
            0.3594513734720183,
            -0.6943868959014736,
            0.45135936968448476,
            -0.1736280375799559,
            0.3873596018690983,
            0.1265821885972507,
            -0.11472098405858708,
            0.16760820875081792,
            0.006864609229582616,
            0.21106523094482682,
            -0.22319601544533904,
            -0.06495080793727921,
            -0.07342075334816564,
            0.10069028249523561,
        ],
    },
    "relax": {
        "steps": [
            [6.84, -0.354776975467871, 1.9985305810744618, 2.259672665057557],
            [5.6525, -1.629754056382371, -1.6544394824102013, 0.5200236941624057],
            [7.865, -1.3549554718134416, 2.5460755390446392, -1.5566851734403346],
        ],
        "learned": [
            0.10386513818483871,
            -0.16634224358958113,
            0.18469327313688863,
            -0.0036758383038454703,
            0.2700387939674386,
            0.11353614465803441,
            -0.04047883110106061,
            -0.4745079246834233,
            0.10477468243404352,
            -0.5178383701538568,
            0.055831851542695654,
            0.058796492570440936,
            -0.09696389760954557,
            0.44212234742507717,
            0.008760877487597662,
            0.26897776419430613,
            0.22647674811187177,
            -0.2650079782744265,
            -0.1642373972401426,
            0.5086065170068531,
            -0.459920044439357,
            1.0,
            0.5,
            10.7416737103276,
        ],
    },
    "relax_relaxed_f": {
        "steps": [
            [6.84, 0.285055587022745, 0.978239607504719, 0.3118327171705978],
            [5.6525, 0.36970148007361675, -0.2481051661673408, 0.138627081248134],
            [7.865, -1.014814252140116, 0.690563783921866, -0.2248846167803521],
        ],
        "learned": [
            0.10618056323733563,
            -0.15359398321435458,
            0.17884187718022962,
            -0.0014933653068161332,
            0.2589061627833902,
            0.12235016327992201,
            -0.055297713791281566,
            -0.4591211560843887,
            0.10980015048882279,
            -0.5090628265292937,
            0.10100494752295555,
            0.057948303093053766,
            -0.10266251889420348,
            0.4501252852137734,
            0.015605182146305342,
            0.2620694238030472,
            0.21874910673485132,
            -0.27240943158233893,
            -0.17646086671251493,
            0.5078841429323548,
            -0.46674408072841517,
            1.0221586427588294,
            0.49313442491337556,
            1.5572993968756341,
        ],
    },
    "rebar": {
        "steps": [
            [6.039999999999999, 0.2683568725625852, 0.3043569152864817, 0.5402404699895117],
            [6.952500000000001, 0.059285754362644924, 1.0313177455859026, 0.43778977860263796],
            [5.8525, 0.00574668626172159, 1.1551846388561953, 0.1884152769371054],
        ],
        "learned": [0.8295493075494932, 0.5918438255590092, 1.3699848908355952],
    },
    "relax_categorical": {
        "steps": [
            [
                1.3333333333333333,
                0.6428332559907959,
                -0.20305427076213428,
                -0.03902880012911211,
                -0.40075018509954957,
            ],
            [
                0.8333333333333334,
                0.9618483104291935,
                -0.17185498407879826,
                -0.4963714067991867,
                -0.29362191955120864,
            ],
            [
                1.3333333333333333,
                0.6239158014558265,
                -0.16097903165426208,
                -0.049303085260291535,
                -0.4136336845412729,
            ],
        ],
        "learned": [
            -0.47950711090545867,
            -0.3699394972712022,
            -0.24361138662383572,
            -0.4999844416938578,
            -0.023198189681072817,
            -0.4623887635897369,
            0.3001163890513329,
            0.2725177108925281,
            0.09880364848070411,
            0.39895440941321925,
            -0.07638370946608804,
            0.26956335714067436,
            -0.3245060805962645,
            -0.12612238423285235,
            -0.4169982130137235,
            -0.05965151262100802,
            -0.3058764775966762,
            0.41961313914547865,
            0.37703537749312266,
            0.3592039149918652,
            0.15070738850461038,
            -0.3131751511797529,
            0.4514245086399601,
            -0.45942368759778535,
            -0.28916088244608856,
        ],
    },
    "learned": {
        "steps": [
            [7.24, 1.1544300337279954, 3.7983868846859146, 2.480151469586587],
            [5.6775, 1.2225736465017172, 0.12456465919035464, -2.455243870121164],
            [6.7524999999999995, 2.935130297512365, -0.15876666872237943, 0.729629514140504],
        ],
        "learned": [
            0.36619696623175835,
            -0.22909819238851664,
            -0.17441279542055044,
            -0.037527241771715916,
        ],
    },
    "moving_average": {
        "steps": [
            [7.24, 1.0210361782835884, 3.432864109281235, 2.2445847566360855],
            [5.5525, 0.38187174711967475, 0.3038386485618668, -0.08566806309715391],
            [6.640000000000001, 0.45058827476085067, -0.005458120105301056, 0.08933630083296404],
        ],
        "learned": [6.458173431734319],
    },
}


def control(inputs: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(inputs, 4), nn.Tanh(), nn.Linear(4, 1), nn.Flatten(0)).double()


def flat(parameters) -> list[float]:
    return torch.cat([p.detach().reshape(-1) for p in parameters]).tolist()


def bernoulli_steps(estimator: vg.DistributionEstimator) -> list[list[float]]:
    logits = torch.tensor([0.3, -1.0, 0.8], dtype=torch.float64, requires_grad=True)
    rows = []
    for _ in range(3):
        logits.grad = None
        loss = vg.expectation(bernoulli_cost, Bernoulli(logits=logits), 4, estimator)
        loss.backward()
        rows.append([loss.item(), *logits.grad.tolist()])
    return rows


def lax() -> tuple[list[list[float]], list[float]]:
    network = control(2, 1)
    estimator = vg.LAX(network, seed=11)
    mu = torch.tensor([0.7, -0.2], dtype=torch.float64, requires_grad=True)
    scale = torch.tensor([1.3, 0.5], dtype=torch.float64, requires_grad=True)
    rows = []
    for _ in range(3):
        mu.grad = scale.grad = None
        loss = vg.expectation(lambda z: torch.cos(z).sum(-1), Normal(mu, scale), 5, estimator)
        loss.backward()
        grads = [*mu.grad.tolist(), *scale.grad.tolist()]
        rows.append([loss.item(), *grads, estimator.last_square_norm])
    return rows, flat(network.parameters())


def relax(relaxed_f: bool) -> tuple[list[list[float]], list[float]]:
    network = control(3, 2)
    estimator = vg.RELAX(network, relaxed_f=relaxed_f, seed=12)
    rows = bernoulli_steps(estimator)
    learned = [float(estimator.eta.detach()), estimator.temperature, estimator.last_square_norm]
    return rows, flat(network.parameters()) + learned


def rebar() -> tuple[list[list[float]], list[float]]:
    estimator = vg.REBAR(temperature=0.6, eta=0.8, seed=13)
    rows = bernoulli_steps(estimator)
    eta = float(estimator.eta.detach())
    return rows, [eta, estimator.temperature, estimator.last_square_norm]


def relax_categorical() -> tuple[list[list[float]], list[float]]:
    network = control(4, 3)
    estimator = vg.RELAX(network, seed=14)
    table = torch.tensor([3.0, -1.0, 0.5, 2.0], dtype=torch.float64)
    logits = torch.tensor([0.2, -0.4, 1.0, 0.0], dtype=torch.float64, requires_grad=True)
    rows = []
    for _ in range(3):
        logits.grad = None
        loss = vg.expectation(lambda x: x @ table, OneHotCategorical(logits=logits), 3, estimator)
        loss.backward()
        rows.append([loss.item(), *logits.grad.tolist()])
    return rows, flat(network.parameters())


def learned() -> tuple[list[list[float]], list[float]]:
    torch.manual_seed(4)
    module = nn.Linear(3, 1).double()
    rows = bernoulli_steps(vg.ScoreFunction(vg.baselines.Learned(module, lr=0.1), seed=15))
    return rows, flat(module.parameters())


def moving_average() -> tuple[list[list[float]], list[float]]:
    estimator = vg.ScoreFunction("moving_average", seed=16)
    rows = bernoulli_steps(estimator)
    assert isinstance(estimator.baseline, vg.baselines.MovingAverage)
    return rows, [estimator.baseline.value]


SCENARIOS: dict[str, Callable[[], tuple[list[list[float]], list[float]]]] = {
    "lax": lax,
    "relax": lambda: relax(False),
    "relax_relaxed_f": lambda: relax(True),
    "rebar": rebar,
    "relax_categorical": relax_categorical,
    "learned": learned,
    "moving_average": moving_average,
}


#: Reproduced to rounding, not bit for bit: RELAX's score term now goes through the shared
#: score-function formula (``control.score_estimate``), which forms Σ (f_i/N) s_i where the
#: code before formed (Σ f_i s_i)/N; with N = 3 samples the two round differently.
TO_ROUNDING = {"relax_categorical"}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_seeded_training_reproduces_the_numbers_from_before_ask_tell(name: str) -> None:
    steps, learned_after = SCENARIOS[name]()
    if name in TO_ROUNDING:
        for actual, pinned in (
            (steps, PINNED[name]["steps"]),
            (learned_after, PINNED[name]["learned"]),
        ):
            torch.testing.assert_close(
                torch.tensor(actual, dtype=torch.float64),
                torch.tensor(pinned, dtype=torch.float64),
                rtol=1e-12,
                atol=0,
            )
    else:
        assert steps == PINNED[name]["steps"]
        assert learned_after == PINNED[name]["learned"]
