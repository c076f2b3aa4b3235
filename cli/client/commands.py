"""The client subcommands of `mandala` (docs/cli.md): generate, jobs, show and all.

``register`` adds them to the `mandala` parser; ``run`` carries one out and returns its exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import date, datetime, time
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from cli.client.api import ApiClient, ApiError
from cli.client.chart import mandala_table, task_tree
from cli.client.config import ConfigError, connection
from cli.client.progress import ProgressBoard, status_text
from cli.client.text import t
from cli.client.watch import EXIT_DETACHED, EXIT_ERROR, EXIT_OK, Detached, report, watch
from domain.enums import Language, ProcessingStatus, ProcessingType

COMMANDS = frozenset({"generate", "jobs", "show", "all"})
_STAGES = (
    ProcessingType.SUBGOAL_GENERATION,
    ProcessingType.ACTION_GENERATION,
    ProcessingType.TASK_GENERATION,
)

Handler = Callable[[argparse.Namespace, "Session"], int]


class Session:
    """What a handler works with: the API, the output and the user's language."""

    def __init__(self, api: ApiClient, console: Console, lang: Language) -> None:
        self.api = api
        self.console = console
        self.lang = lang

    def follow(self, job: dict[str, Any]) -> int:
        """Watch one job with its own progress row, then report it."""
        board = ProgressBoard(self.console)
        row = board.add(t(job["type"], self.lang), t("waiting", self.lang))
        self.console.print(t("started", self.lang, pid=job["processId"]), highlight=False)
        with board:
            final = watch(self.api, board, row, job, self.lang)
        return report(self.console, final, self.lang)


def run(args: argparse.Namespace) -> int:
    errors = Console(stderr=True)
    try:
        conn = connection(args.api_url, args.token)
    except ConfigError as exc:
        errors.print(f"mandala {args.command}: {exc}", highlight=False, markup=False)
        return EXIT_ERROR
    handler: Handler = args.handler
    with ApiClient(conn) as api:
        try:
            return handler(args, Session(api, Console(), conn.lang))
        except ApiError as exc:
            errors.print(f"mandala {args.command}: {exc.message} ({exc.code})", highlight=False, markup=False)
            return EXIT_ERROR
        except Detached as exc:
            errors.print(t("detached", conn.lang, pid=exc.process_id), highlight=False, markup=False)
            return EXIT_DETACHED
        except KeyboardInterrupt:  # before any job was being watched: nothing to offer
            return EXIT_DETACHED


# ------------------------------------------------------------------------------------------ the parsers


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    api = argparse.ArgumentParser(add_help=False)
    api.add_argument(
        "--api-url", help="the API base URL (default: $MANDALA_API_URL or http://127.0.0.1:8000)"
    )
    api.add_argument("--token", help="a bearer token (default: $MANDALA_TOKEN)")
    watching = argparse.ArgumentParser(add_help=False)
    watching.add_argument(
        "--watch",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="follow the job's progress live until it ends (default: on)",
    )

    generate = commands.add_parser("generate", help="start a generation job and watch it")
    kinds = generate.add_subparsers(dest="kind", required=True, metavar="KIND")
    subgoals = kinds.add_parser("subgoals", parents=[api, watching], help="a goal and its 8 subgoals")
    _goal_fields(subgoals)
    subgoals.add_argument("--goal-id", help="regenerate the subgoals of this existing goal")
    _regenerate_flag(subgoals)
    subgoals.set_defaults(handler=_generate_subgoals)
    for kind, parent_flag, parent_help in (
        ("actions", "--subgoal", "only this subgoal's 8 actions"),
        ("tasks", "--action", "only this action's tasks"),
    ):
        parser = kinds.add_parser(kind, parents=[api, watching], help=f"{kind} for a goal, or {parent_help}")
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument(
            "goal_id", nargs="?", metavar="GOAL_ID", help=f"{kind} for every item of this goal"
        )
        target.add_argument(parent_flag, dest="parent_id", metavar="ID", help=parent_help)
        _regenerate_flag(parser)
        parser.set_defaults(handler=_generate_children)

    jobs = commands.add_parser("jobs", help="list, show, cancel and retry your jobs")
    verbs = jobs.add_subparsers(dest="verb", required=True, metavar="VERB")
    listing = verbs.add_parser("list", parents=[api], help="your jobs, newest first")
    listing.add_argument("--status", type=str.upper, choices=[s.value for s in ProcessingStatus])
    listing.add_argument("--type", type=str.upper, choices=[kind.value for kind in ProcessingType])
    listing.add_argument("--page", type=int, default=1)
    listing.add_argument("--page-size", type=int, default=20)
    listing.set_defaults(handler=_jobs_list)
    show_job = verbs.add_parser("show", parents=[api], help="one job's status")
    show_job.add_argument("process_id", metavar="PID")
    show_job.add_argument(
        "--watch", action="store_true", help="follow it until it ends; exit code as for generate"
    )
    show_job.set_defaults(handler=_jobs_show)
    cancel = verbs.add_parser("cancel", parents=[api], help="cancel a PENDING or PROCESSING job")
    cancel.add_argument("process_id", metavar="PID")
    cancel.add_argument("--reason", help="at most 500 characters")
    cancel.set_defaults(handler=_jobs_cancel)
    retry = verbs.add_parser("retry", parents=[api, watching], help="retry a FAILED or TIMEOUT job")
    retry.add_argument("process_id", metavar="PID")
    retry.set_defaults(handler=_jobs_retry)

    show = commands.add_parser("show", parents=[api], help="draw a goal's 9×9 mandala")
    show.add_argument("goal_id", metavar="GOAL_ID")
    output = show.add_mutually_exclusive_group()
    output.add_argument("--tasks", action="store_true", help="also list the tasks of every action")
    output.add_argument("--json", action="store_true", help="print the raw goal tree as JSON")
    show.set_defaults(handler=_show)

    everything = commands.add_parser(
        "all", parents=[api], help="the whole chart: subgoals, then actions, then tasks, in one go"
    )
    _goal_fields(everything)
    everything.set_defaults(handler=_all)


def _goal_fields(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--title", required=True, help="the goal (at most 200 characters)")
    parser.add_argument("--description", required=True, help="what reaching it means (at most 2000)")
    parser.add_argument(
        "--deadline",
        required=True,
        type=_deadline,
        help="an ISO 8601 date-time with an offset, or a date (the end of that day, local time)",
    )
    parser.add_argument("--background", required=True, help="where you stand today (at most 1000)")
    parser.add_argument("--constraints", help="limits to respect (at most 1000)")


def _regenerate_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--regenerate", action="store_true", help="replace items generated before")


def _deadline(value: str) -> str:
    try:
        day = date.fromisoformat(value)
    except ValueError:
        pass
    else:
        return datetime.combine(day, time(23, 59, 59)).astimezone().isoformat()
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"expected a date or a date-time with an offset, got {value!r}")
    return value


def _goal_params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {
        "title": args.title,
        "description": args.description,
        "deadline": args.deadline,
        "background": args.background,
    }
    if args.constraints:
        params["constraints"] = args.constraints
    return params


# ----------------------------------------------------------------------------------------- the handlers


def _start(args: argparse.Namespace, s: Session, job_type: ProcessingType, params: dict[str, Any]) -> int:
    if args.regenerate:
        params["regenerate"] = True
    job = s.api.generate(job_type.value, params)
    if args.watch:
        return s.follow(job)
    s.console.print(t("started", s.lang, pid=job["processId"]), highlight=False)
    s.console.print_json(data=job)
    return EXIT_OK


def _generate_subgoals(args: argparse.Namespace, s: Session) -> int:
    params = _goal_params(args)
    if args.goal_id:
        params["goalId"] = args.goal_id
    return _start(args, s, ProcessingType.SUBGOAL_GENERATION, params)


def _generate_children(args: argparse.Namespace, s: Session) -> int:
    if args.kind == "actions":
        job_type, parent_key = ProcessingType.ACTION_GENERATION, "subGoalId"
    else:
        job_type, parent_key = ProcessingType.TASK_GENERATION, "actionId"
    params = {"goalId": args.goal_id} if args.goal_id else {parent_key: args.parent_id}
    return _start(args, s, job_type, params)


def _all(args: argparse.Namespace, s: Session) -> int:
    board = ProgressBoard(s.console)
    rows = [board.add(t(stage.value, s.lang), t("waiting", s.lang)) for stage in _STAGES]
    params = _goal_params(args)
    with board:
        for stage, row in zip(_STAGES, rows, strict=True):
            job = s.api.generate(stage.value, params)
            s.console.print(t("started", s.lang, pid=job["processId"]), highlight=False)
            final = watch(s.api, board, row, job, s.lang)
            if final["status"] != ProcessingStatus.COMPLETED:
                break
            params = {"goalId": final["targetId"]}
    return report(s.console, final, s.lang)


def _jobs_list(args: argparse.Namespace, s: Session) -> int:
    page = s.api.history(status=args.status, type=args.type, page=args.page, pageSize=args.page_size)
    jobs: list[dict[str, Any]] = page["processes"]
    if not jobs:
        s.console.print(t("no_jobs", s.lang))
        return EXIT_OK
    table = Table("processId", "type", "status", "progress", "createdAt", "error")
    for job in jobs:
        error = job.get("error")
        table.add_row(
            job["processId"],
            t(job["type"], s.lang),
            status_text(job["status"]),
            f"{job['progress']}%",
            job["createdAt"],
            f"{error['code']}: {error['message']}" if error else "",
        )
    s.console.print(table)
    info = page["pagination"]
    s.console.print(t("page", s.lang, page=info["page"], pages=info["totalPages"], total=info["totalCount"]))
    return EXIT_OK


_SHOWN_FIELDS = (
    "processId",
    "type",
    "status",
    "progress",
    "scope",
    "targetType",
    "targetId",
    "retryCount",
    "parentProcessId",
    "createdAt",
    "startedAt",
    "completedAt",
    "estimatedCompletionTime",
    "cancelReason",
)


def _jobs_show(args: argparse.Namespace, s: Session) -> int:
    job = s.api.status(args.process_id)
    if args.watch:
        if not ProcessingStatus(job["status"]).is_terminal:
            return s.follow(job)
        return report(s.console, job, s.lang)
    table = Table.grid(padding=(0, 2))
    for key in _SHOWN_FIELDS:
        if job.get(key) is not None:
            value = status_text(job[key]) if key == "status" else Text(str(job[key]))
            table.add_row(Text(key, style="bold"), value)
    units = job["units"]
    table.add_row(Text("units", style="bold"), f"{units['succeeded']}+{units['failed']}/{units['total']}")
    if error := job.get("error"):
        table.add_row(Text("error", style="bold"), Text(f"{error['code']}: {error['message']}"))
    s.console.print(table)
    return EXIT_OK


def _jobs_cancel(args: argparse.Namespace, s: Session) -> int:
    done = s.api.cancel(args.process_id, args.reason)
    s.console.print(status_text(done["status"]), Text(done["message"]))
    return EXIT_OK


def _jobs_retry(args: argparse.Namespace, s: Session) -> int:
    job = s.api.retry(args.process_id)
    if args.watch:
        return s.follow(job)
    s.console.print(t("started", s.lang, pid=job["processId"]), highlight=False)
    return EXIT_OK


def _show(args: argparse.Namespace, s: Session) -> int:
    data = s.api.goal(args.goal_id)
    if args.json:
        sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
        return EXIT_OK
    goal = data["goal"]
    s.console.print(Text(f"{goal['title']}  ({goal['id']})", style="bold"))
    if not goal["subGoals"]:
        s.console.print(t("no_subgoals", s.lang))
        return EXIT_OK
    s.console.print(mandala_table(goal, s.console))
    if args.tasks:
        s.console.print(task_tree(goal, s.lang))
    return EXIT_OK
