"""Defaults that depend on how many categories are asked for: few types or many types.

With many categories (``n_categories >= MANY_TYPES``) the paper's defaults erase sister types:
the Aitchison coupling's floored tail makes both arms retreat to the class level, and the graph
start has far fewer communities than categories, which the mixture phase never splits
(``benchmarks/results/fine_mech.md``). Asked for many categories, :class:`~cplmix_sc.CplMixVAE`
therefore starts from the top-down split of ``init="divisive"``, couples the arms with
``"detached"`` (each arm pulled towards the other's stop-gradient posterior) and keeps the
start's pull in the mixture phase (``start_weight``), with no coupling during the warm-up.
With few categories the graph start and the Aitchison coupling (Eqs. 47-48) stay: there the
divisive start cuts types along a strong state (``benchmarks/results/quality.md``).
Every value below is only a default: an argument given explicitly always wins.
"""

from __future__ import annotations

#: fewest categories that get the many-types defaults (the smallest type count of the
#: many-type simulator family, :func:`cplmix_sc.datasets.synthetic_hierarchy`)
MANY_TYPES = 24

#: module arguments of the many-types defaults (``benchmarks/results/fine_types.md``)
MANY_TYPES_MODULE = {"coupling": "detached", "warmup_coupling": False, "start_weight": 10.0}
#: the same arguments with few types: the module's own defaults
FEW_TYPES_MODULE = {"coupling": "aitchison", "warmup_coupling": True, "start_weight": 0.0}


def many_types(n_categories: int) -> bool:
    """Whether ``n_categories`` gets the many-types defaults."""
    return int(n_categories) >= MANY_TYPES


def resolve_coupling(coupling: str, n_categories: int, module_kwargs: dict) -> str:
    """The coupling for ``coupling="auto"``; fills ``warmup_coupling`` and ``start_weight``
    into ``module_kwargs`` (in place) when they are not given and many types are asked for."""
    defaults = MANY_TYPES_MODULE if many_types(n_categories) else FEW_TYPES_MODULE
    if coupling == "auto":
        coupling = defaults["coupling"]
    if many_types(n_categories):
        for key in ("warmup_coupling", "start_weight"):
            module_kwargs.setdefault(key, defaults[key])
    return coupling


def resolve_init(init: str, n_categories: int) -> str:
    """The start for ``train(init="auto")``: ``"divisive"`` with many types, else
    ``"leiden"``."""
    if init != "auto":
        return init
    return "divisive" if many_types(n_categories) else "leiden"
