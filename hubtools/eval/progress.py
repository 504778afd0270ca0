"""One progress bar per benchmark: samples done (stored ones included), pass rate, ETA."""

from __future__ import annotations

import time

from tqdm.auto import tqdm


class EvalProgress:
    def __init__(
        self, runs, ks: dict[str, int], totals: dict[str, int], teacher: str, enabled=True
    ):
        self.bars, self._before, self._last = {}, {}, 0.0
        for i, (name, run) in enumerate(runs.items()):
            with run.store() as store:
                scores = [
                    s["score"] for s in store.iter_samples(teacher, below=ks[name])
                    if s["score"] is not None or s["error"]
                ]  # fmt: skip
            done, passed = len(scores), sum((s or 0) >= 1.0 for s in scores)
            self._before[name] = (done, passed)
            self.bars[name] = tqdm(
                desc=name, unit="sample", total=max(totals[name], done), initial=done, position=i,
                disable=not enabled, dynamic_ncols=True,
            )  # fmt: skip

    def for_(self, name: str):
        """The runner's ``on_progress`` for benchmark ``name`` (its stats count samples)."""
        bar, (done_before, passed_before) = self.bars[name], self._before[name]

        def update(stats) -> None:
            bar.update(done_before + stats.done - bar.n)
            now = time.monotonic()
            if now - self._last >= 0.5:
                self._last = now
                done = done_before + stats.done
                rate = (passed_before + stats.passed) / done if done else 0.0
                bar.set_postfix(pass_rate=f"{rate:.1%}", in_flight=stats.in_flight, refresh=False)

        return update

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
