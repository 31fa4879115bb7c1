"""The eight modes of variation of a synthetic nodule patch, with their benign and malignant looks.

Every sample has a binary label (0 benign, 1 malignant) and one value per mode. Categorical modes
take one of their ``categories``; continuous modes (and the ``vessels`` count) take a number in
``domain``. Each mode has a *benign look* and a *malignant look*: a subset of categories, or a
``(low, high)`` range. The looks follow the features radiologists weigh when judging a pulmonary
nodule (Lung-RADS, the Brock / PanCan model, Fleischner guidelines); see ``rationale``.

Inside the package, a factor value is always a float32 number: a categorical value is stored as
the index of its category in ``categories``, a count as an integral float.

Each mode also has a **visibility** control (``[modes.<mode>] visibility`` in a spec, default 1):
how visible the difference between its benign and its malignant look is, the data-side knob of a
mode's availability. 1 renders the looks as they are (the default reproduces the pixels of every
spec written before the control existed); 0 makes the two looks identical, so the mode carries
no label information whatever its alignment. Two mechanisms, named by ``visibility_acts_on``:

* ``"looks"`` (the numeric modes size, contrast, position, noise, vessels): each end of each look
  is moved towards the mean of the two looks' corresponding ends, ``end' = mean + v (end -
  mean)`` (counts rounded to the nearest integer), so the difference between the malignant and
  the benign look, end by end, is scaled by ``v``; the factor values stay what is rendered;
* ``"render"`` (the categorical modes margin, texture, calcification): the renderer draws the
  malignant-looking categories closer to the benign one; see ``visibility_effect``.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

Kind = Literal["categorical", "continuous", "count"]


@dataclasses.dataclass(frozen=True)
class Mode:
    """One mode of variation.

    Attributes:
        name: the mode's name, as used in specs, TFRecords and reports.
        kind: ``categorical``, ``continuous`` or ``count`` (integers in ``domain``).
        unit: unit of a numeric value ("mm", "HU", "tubes"), ``""`` for categorical modes.
        categories: the category names of a categorical mode, else ``()``.
        domain: ``(low, high)`` of a numeric mode; ``(0, len(categories) - 1)`` for categorical.
        benign: the benign look: category names, or a ``(low, high)`` range.
        malignant: the malignant look, likewise.
        rationale: why the looks are what they are, radiologically.
        visibility_max: the largest valid ``visibility`` (the smallest is 0, the default 1).
        visibility_acts_on: ``"looks"`` (sampling: the gap between the looks is scaled) or
            ``"render"`` (the renderer draws the categories closer together); see module doc.
        visibility_effect: what ``visibility`` changes, in words (for docs and error messages).
    """

    name: str
    kind: Kind
    unit: str
    categories: tuple[str, ...]
    domain: tuple[float, float]
    benign: tuple
    malignant: tuple
    rationale: str
    visibility_max: float = 1.0
    visibility_acts_on: Literal["looks", "render"] = "looks"
    visibility_effect: str = (
        "scales the gap between the benign and the malignant look: each end of each look moves "
        "towards the mean of the two looks' corresponding ends, end' = mean + v (end - mean)"
    )

    @property
    def is_categorical(self) -> bool:
        return self.kind == "categorical"

    def category_index(self, category: str) -> int:
        """Index of ``category``; raises a ``ValueError`` listing the valid categories."""
        if category not in self.categories:
            raise ValueError(
                f"Unknown category {category!r} for mode {self.name!r}. "
                f"Valid categories: {', '.join(self.categories)}."
            )
        return self.categories.index(category)

    def format_value(self, value: float) -> str:
        """Human-readable value: the category name, or the number with its unit."""
        if self.is_categorical:
            return self.categories[int(round(value))]
        if self.kind == "count":
            return f"{int(round(value))} {self.unit}"
        return f"{value:g} {self.unit}"


MODES: dict[str, Mode] = {
    m.name: m
    for m in (
        Mode(
            name="margin",
            kind="categorical",
            unit="",
            categories=("smooth", "lobulated", "spiculated"),
            domain=(0.0, 2.0),
            benign=("smooth",),
            malignant=("lobulated", "spiculated"),
            rationale=(
                "Spiculation and lobulation reflect invasive, uneven growth and are among the "
                "strongest morphological predictors of malignancy (Brock model); benign nodules "
                "such as granulomas and hamartomas are typically smooth."
            ),
            visibility_max=2.0,
            visibility_acts_on="render",
            visibility_effect=(
                "lobulation and spicules: the outline of a lobulated or spiculated nodule is the smooth "
                "outline plus v times its deviation from it (harmonic amplitudes, spicule length "
                "and width); 0 renders every margin smooth, 2 doubles the deviation"
            ),
        ),
        Mode(
            name="size",
            kind="continuous",
            unit="mm",
            categories=(),
            domain=(4.0, 30.0),
            benign=(4.0, 10.0),
            malignant=(14.0, 28.0),
            rationale=(
                "Malignancy risk rises steeply with diameter: nodules under 6 mm are almost always "
                "benign, while those above 15-20 mm carry a high risk (Lung-RADS 4B/4X)."
            ),
        ),
        Mode(
            name="texture",
            kind="categorical",
            unit="",
            categories=("solid", "part_solid", "ground_glass"),
            domain=(0.0, 2.0),
            benign=("solid",),
            malignant=("part_solid", "ground_glass"),
            rationale=(
                "Subsolid nodules, part-solid ones above all, are far more often adenocarcinomas "
                "than small solid nodules, which are mostly granulomas or lymph nodes."
            ),
            visibility_max=1.0,
            visibility_acts_on="render",
            visibility_effect=(
                "subsolid composition: a part-solid or ground-glass nodule's solid core "
                "fraction and opacity move towards a solid nodule's by 1 - v and its ground-glass "
                "halo's opacity is scaled by v; 0 renders every texture solid"
            ),
        ),
        Mode(
            name="calcification",
            kind="categorical",
            unit="",
            categories=("none", "calcified"),
            domain=(0.0, 1.0),
            benign=("calcified",),
            malignant=("none",),
            rationale=(
                "Central, diffuse, laminated or popcorn calcification is a hallmark of benign "
                "lesions (healed granulomas, hamartomas); malignant nodules rarely calcify."
            ),
            visibility_max=1.0,
            visibility_acts_on="render",
            visibility_effect=(
                "the opacity of the calcified focus is scaled by v; 0 renders a "
                "calcified nodule as one without calcification"
            ),
        ),
        Mode(
            name="contrast",
            kind="continuous",
            unit="HU",
            categories=(),
            domain=(-250.0, 150.0),
            benign=(-250.0, -120.0),
            malignant=(0.0, 150.0),
            rationale=(
                "Attenuation of the solid component: denser, well-vascularised tissue appears "
                "brighter, while low-attenuation (fat-containing or mucoid) nodules lean benign."
            ),
        ),
        Mode(
            name="position",
            kind="continuous",
            unit="mm",
            categories=(),
            domain=(0.0, 12.0),
            benign=(0.0, 3.0),
            malignant=(7.0, 12.0),
            rationale=(
                "A nuisance mode: offset of the nodule from the patch centre. It is not a "
                "biological sign; an off-centre shift stands in for how a detector or annotation "
                "protocol at one site crops its patches, a classic acquisition shortcut."
            ),
        ),
        Mode(
            name="noise",
            kind="continuous",
            unit="HU",
            categories=(),
            domain=(5.0, 60.0),
            benign=(5.0, 18.0),
            malignant=(35.0, 60.0),
            rationale=(
                "A nuisance mode: scanner noise sigma. Low-dose screening CT is noisier than "
                "diagnostic CT; when malignant cases come from diagnostic follow-up at another "
                "site, noise level becomes a shortcut for the label."
            ),
        ),
        Mode(
            name="vessels",
            kind="count",
            unit="tubes",
            categories=(),
            domain=(0.0, 6.0),
            benign=(0.0, 1.0),
            malignant=(4.0, 6.0),
            rationale=(
                "Vessel convergence: malignant nodules recruit and distort nearby vessels, so "
                "more vessel-like tubes run through the patch."
            ),
        ),
    )
}

MODE_NAMES: tuple[str, ...] = tuple(MODES)
# The modes whose ``visibility`` the renderer applies (the others act on the looks when sampling).
RENDER_VISIBILITY_MODES: tuple[str, ...] = tuple(
    name for name, mode in MODES.items() if mode.visibility_acts_on == "render"
)


def get_mode(name: str) -> Mode:
    """The mode called ``name``; raises a ``ValueError`` listing the valid modes."""
    try:
        return MODES[name]
    except KeyError:
        raise ValueError(
            f"Unknown mode {name!r}. Valid modes: {', '.join(MODE_NAMES)}."
        ) from None


GRID_POINTS = 9


def mode_grid(mode: str, points: int = GRID_POINTS) -> np.ndarray:
    """Values that sweep ``mode`` across its whole domain, in the internal float encoding.

    The one grid of the package: the preview sheet's rows and the sensitivity analysis's
    partial-dependence curves both use it. Categorical modes: every category; counts: every
    integer of the domain; continuous modes: ``points`` evenly spaced values from the low to
    the high end of the domain.

    Returns:
        float32 ``[G]``.
    """
    info = get_mode(mode)
    if isinstance(points, bool) or not isinstance(points, (int, np.integer)) or points < 2:
        raise ValueError(f"Invalid value for argument `points`. Expected an integer >= 2. "
                         f"Received: points={points!r}")
    low, high = info.domain
    if info.is_categorical or info.kind == "count":
        return np.arange(int(round(low)), int(round(high)) + 1, dtype=np.float32)
    return np.linspace(low, high, points, dtype=np.float32)
