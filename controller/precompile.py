"""The static apps' rules, compiled once per view and ahead of the switches that will need them.

An app that declares ``static_compile = True`` promises that its
``compile`` reads only the view (and what it derives from the model), not
runtime state: two views with the same model and the same
:attr:`~controller.fabric.view.FabricView.key` get the same segments from
it. :class:`StaticCompiler` keeps those segments by view, so

- a recompute whose view did not change (a health check flips, a learned
  host moves) reuses them (the last two views are kept), and
- :meth:`StaticCompiler.prepare`, called when a network file is loaded or
  reloaded, compiles for each declared switch that is not connected the
  view it will make when it connects next (its ports do not count unless the
  file names them, see ``FabricView.key``), checks every rule against the
  pipeline and makes each rule's cookie and flow-mod bytes
  (``Rule.encoded``). When that switch connects, its rules are ready: the
  connect costs the diff and the sending, not the compile.

The rules are the same objects every time they are reused, so their cookies
and bytes are made once. Prepared views are kept until the model changes
(one per declared switch); memory is one copy of the static rules of each
declared switch that has not connected yet.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Iterable, Sequence

from apps.base import App, Segments
from controller.config.model import Model
from controller.fabric.view import FabricView
from controller.flows.pipeline import Pipeline
from controller.flows.rules import Rule

RECENT = 2
"""Views compiled on demand that are kept (the current one and the one before)."""


def is_static(app: App) -> bool:
    """Whether ``app`` declared that its ``compile`` reads only the view (``static_compile = True``)."""
    return getattr(app, "static_compile", False) is True


class StaticCompiler:
    """Segments of the static ``apps`` by (model, view key); see the module docstring."""

    def __init__(self, apps: Sequence[App], pipeline: Pipeline) -> None:
        self.apps = [a for a in apps if is_static(a)]
        self.pipeline = pipeline
        self._model: Model | None = None
        self._prepared: dict[object, Segments] = {}
        self._recent: OrderedDict[object, Segments] = OrderedDict()
        self._checked: dict[int, Rule] = {}
        """id -> rule of every rule :meth:`prepare` checked (kept alive by ``_prepared``)."""
        self.hits = 0
        """How many compiles were answered from a kept view (tests and the log read it)."""

    def _for(self, model: Model) -> None:
        """Forget everything compiled under another model."""
        if self._model is not model:
            self._model = model
            self._prepared.clear()
            self._recent.clear()
            self._checked.clear()

    def _compile(self, view: FabricView) -> Segments:
        segments: Segments = {}
        for app in self.apps:
            segments.update(app.compile(view))
        return segments

    def cached(self, view: FabricView) -> Segments | None:
        """The segments kept for ``view`` (same model, equal key), or None."""
        self._for(view.model)
        key = view.key
        found = self._prepared.get(key)
        if found is None:
            found = self._recent.get(key)
            if found is not None:
                self._recent.move_to_end(key)
        return found

    def compile(self, view: FabricView, verify: bool = False) -> Segments:
        """Every segment of the static apps for ``view``: kept ones if the view is known, else compiled and kept.

        With ``verify`` a kept answer is compiled again and compared.

        Raises
        ------
        AssertionError
            With ``verify``, if the kept segments differ from a fresh compile
            (an app marked static read something the view key does not cover).
        """
        found = self.cached(view)
        if found is not None:
            self.hits += 1
            if verify and found != self._compile(view):
                raise AssertionError(f"precompiled segments differ from a fresh compile of view {view.key!r}")
            return found
        segments = self._compile(view)
        self._recent[view.key] = segments
        while len(self._recent) > RECENT:
            self._recent.popitem(last=False)
        return segments

    def prepare(self, view: FabricView) -> int:
        """Compile ``view`` ahead, check its rules against the pipeline and make their bytes; return the rule count.

        Raises :class:`~controller.flows.pipeline.PipelineError` for a rule that does not fit its table.
        """
        self._for(view.model)
        key = view.key
        segments = self._prepared.get(key) or self._recent.get(key) or self._compile(view)
        self._prepared[key] = segments
        count = 0
        for seg in segments.values():
            for rules in seg.values():
                for rule in rules:
                    if self._checked.get(id(rule)) is not rule:
                        self.pipeline.check_rule(rule)
                        rule.cookie  # noqa: B018  (cookie and bytes made now, read when the switch connects)
                        self._checked[id(rule)] = rule
                    count += 1
        return count

    def checked(self, rule: Rule) -> bool:
        """Whether :meth:`prepare` already checked ``rule`` (this very object) against the pipeline."""
        return self._checked.get(id(rule)) is rule

    def unchecked(self, rules: Iterable[Rule]) -> list[Rule]:
        """Those of ``rules`` that :meth:`prepare` did not check (see :meth:`checked`), in their order."""
        get = self._checked.get
        return [r for r in rules if get(id(r)) is not r]

    def prepared_views(self) -> Collection[object]:
        """Keys of the views prepared under the current model."""
        return list(self._prepared)
