"""Feedback on long work: doit's console report without a line per up-to-date task, and a tqdm
bar per batch of sampling steps (quiet when the output is not a terminal)."""
from __future__ import annotations

from doit.reporter import ConsoleReporter


class Reporter(ConsoleReporter):
    """doit's console reporter, except that up-to-date tasks are counted in one closing line
    instead of one `--` line each (an up-to-date build of the article has about 150 tasks)."""

    desc = "console output, up-to-date tasks counted"

    def __init__(self, outstream, options):
        super().__init__(outstream, options)
        self.uptodate = self.ran = 0

    def execute_task(self, task):
        self.ran += bool(task.actions)
        super().execute_task(task)

    def skip_uptodate(self, task):
        self.uptodate += bool(task.actions)  # a group of subtasks has none: not counted

    def complete_run(self):
        if self.uptodate:
            what = "task is" if self.uptodate == 1 else "tasks are"
            self.write(f"{self.uptodate} {what} up to date"
                       + (f", {self.ran} ran\n" if self.ran else "; nothing to do\n"))
        super().complete_run()


def steps_bar(total_steps: int, what: str):
    """A tqdm bar over one batch's sampling steps: `what` names the batch and how many
    generations of the task are done; steps, elapsed time and the ETA come from tqdm."""
    from tqdm.auto import tqdm

    return tqdm(total=total_steps, desc=what, unit="step", disable=None, leave=False)
