"""Request and task context for log records, so one payment can be followed across processes.

Each HTTP request gets a request id (the client's X-Request-ID if sane, else a new one). It is
put on every log record, sent back in the response header, and carried in the headers of every
Celery task published while handling the request; a task carries it on to the tasks it
publishes. Worker log records also get the task id and name.
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


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.task_id = task_id_var.get()
        record.task_name = task_name_var.get()
        return True


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
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
