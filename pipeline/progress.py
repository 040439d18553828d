"""Feedback on long work: doit's console report without a line per up-to-date task, and a tqdm
bar per batch of sampling steps (quiet when the output is not a terminal)."""
from __future__ import annotations

import time

from doit.reporter import ConsoleReporter

TIMES = "build/task-times.json"  # wall seconds of every task the last `doit` run executed


class Reporter(ConsoleReporter):
    """doit's console reporter, except that up-to-date tasks are counted in one closing line
    instead of one `--` line each (an up-to-date build of the article has about 150 tasks), and
    the wall time of each task that ran is written to TIMES, after each task, so that a run cut
    off keeps what it measured (benchmarks/build_speed.py and gpu_e2e.py read it)."""

    desc = "console output, up-to-date tasks counted, task times recorded"

    def __init__(self, outstream, options):
        super().__init__(outstream, options)
        self.uptodate = self.ran = 0
        self.started, self.seconds = {}, {}

    def execute_task(self, task):
        self.ran += bool(task.actions)
        self.started[task.name] = time.perf_counter()
        super().execute_task(task)

    def add_success(self, task):
        if task.name in self.started:
            self.seconds[task.name] = round(time.perf_counter() - self.started[task.name], 3)
            from .files import write_json

            write_json(TIMES, self.seconds)  # after every task: a killed run keeps its times
        super().add_success(task)

    def skip_uptodate(self, task):
        self.uptodate += bool(task.actions)  # a group of subtasks has none: not counted

    def complete_run(self):
        if self.uptodate:
            what = "task is" if self.uptodate == 1 else "tasks are"
            self.write(f"{self.uptodate} {what} up to date"
                       + (f", {self.ran} ran\n" if self.ran else "; nothing to do\n"))
        super().complete_run()


def steps_bar(total_steps: int, what: str):
    """A tqdm bar over a task's sampling steps (its workers update it as they go): `what` names
    the task and how many generations it samples; steps, elapsed time and the ETA from tqdm."""
    from tqdm.auto import tqdm

    return tqdm(total=total_steps, desc=what, unit="step", disable=None, leave=False)
