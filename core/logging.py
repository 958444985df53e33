"""Request and task context for log records, so one payment can be followed across processes.

Each HTTP request gets a request id (the client's X-Request-ID if sane, else a new one). It is
put on every log record, sent back in the response header, and carried in the headers of every
Celery task published while handling the request; a task carries it on to the tasks it
publishes. Worker log records also get the task id and name.

Every process (web, gunicorn itself, worker, beat) formats records with `json_formatter()`:
one JSON object a line, `time` in ISO 8601 with its UTC offset. Tasks that send no task events
(the frequent housekeeping ones, config/celery.py QUIET_TASKS) have Celery's routine
"received", "succeeded" and beat's "Sending due task" lines lowered to DEBUG (`QuietTasksFilter`).
"""

import contextvars
import logging
import re
import uuid

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
task_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("task_id", default=None)
task_name_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("task_name", default=None)

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
REQUEST_ID_HEADER = "request_id"
# Loggers whose INFO lines about a quiet task are lowered to DEBUG (see QuietTasksFilter).
QUIET_TASK_LOGGERS = ("celery.app.trace", "celery.worker.strategy", "celery.beat")


def json_formatter() -> dict:
    """The logging.config entry of the JSON formatter every process uses."""
    return {
        "()": "pythonjsonlogger.json.JsonFormatter",
        "fmt": "%(levelname)s %(name)s %(message)s %(request_id)s %(task_id)s %(task_name)s",
        "rename_fields": {"levelname": "level", "name": "logger"},
        # datetime.isoformat() in UTC: 2025-01-31T12:00:00.123456+00:00 (asctime has no offset).
        "timestamp": "time",
    }


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # django.request logs a 4xx after the middleware returned: the id is on its request.
        record.request_id = request_id_var.get() or getattr(
            getattr(record, "request", None), "request_id", None
        )
        record.task_id = task_id_var.get()
        record.task_name = task_name_var.get()
        return True


class QuietTasksFilter(logging.Filter):
    """Celery's routine INFO lines about a task that sends no task events become DEBUG lines.

    A sweep every few seconds would otherwise write two lines a run in the worker and one in
    beat. Failures (WARNING and above) are untouched; with LOG_LEVEL=DEBUG the lines come back.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not _is_quiet(_task_name(record)):
            return True
        if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return False
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


def _task_name(record: logging.LogRecord) -> str | None:
    data = getattr(record, "data", None)  # celery.app.trace and the worker's strategy
    if isinstance(data, dict):
        return data.get("name")
    if record.name == "celery.beat" and isinstance(record.args, tuple) and len(record.args) == 2:
        return record.args[1]  # "Scheduler: Sending due task %s (%s)", entry name and task
    return None


def _is_quiet(name: str | None) -> bool:
    from celery import current_app

    task = current_app.tasks.get(name) if name else None
    return task is not None and not task.send_events


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        token = request_id_var.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-ID"] = request_id
        return response


def _add_request_id_header(headers=None, **kwargs) -> None:
    request_id = request_id_var.get()
    if request_id and headers is not None:
        headers.setdefault(REQUEST_ID_HEADER, request_id)


def _enter_task(task_id=None, task=None, **kwargs) -> None:
    task_id_var.set(task_id)
    task_name_var.set(getattr(task, "name", None))
    request_id_var.set(getattr(task.request, REQUEST_ID_HEADER, None) if task else None)


def _leave_task(**kwargs) -> None:
    task_id_var.set(None)
    task_name_var.set(None)
    request_id_var.set(None)


def connect_celery_signals() -> None:
    from celery import signals

    signals.before_task_publish.connect(_add_request_id_header, weak=False, dispatch_uid="core.request_id")
    signals.task_prerun.connect(_enter_task, weak=False, dispatch_uid="core.enter_task")
    signals.task_postrun.connect(_leave_task, weak=False, dispatch_uid="core.leave_task")
