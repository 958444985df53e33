"""A stateful fuzz of the API (schemathesis' state machine): sequences of calls in which the ids
that one call creates are fed to later calls on those objects (a cart item then its change,
a booking then its cancellation, a subscription then its pause...), as a customer and as
staff. The links between operations are inferred by schemathesis from the OpenAPI schema
(response fields and path parameters). Every answer is checked as in test_api_fuzz.py: no
5xx but a documented 503, status code, content type and body as documented.

Bounded for CI: TEST_FUZZ_STATEFUL_EXAMPLES sequences (default 25) of up to
TEST_FUZZ_STATEFUL_STEPS calls (default 10) per caller. The long run outside CI, thousands of
examples per operation and hundreds of sequences (README, "Tests"):

    TEST_FUZZ_EXAMPLES=2000 TEST_FUZZ_STATEFUL_EXAMPLES=500 TEST_FUZZ_STATEFUL_STEPS=30 \\
        .venv/bin/pytest --timeout 0 tests/core/test_api_fuzz.py tests/core/test_api_stateful.py \\
        tests/security/test_webhook_fuzz.py
"""

import os

import pytest
from django.core.cache import cache
from django.db import transaction
from hypothesis import HealthCheck, Phase, settings
from schemathesis import checks

from tests.core.test_api_fuzz import CHECKS, callers, schema  # noqa: F401 - callers is a fixture
from tests.factories import ResourceFactory, ServiceFactory
from tests.orders.factories import VariantFactory
from tests.subscriptions.factories import PlanFactory, ToyFactory

SEQUENCES = int(os.environ.get("TEST_FUZZ_STATEFUL_EXAMPLES", "25"))
STEPS = int(os.environ.get("TEST_FUZZ_STATEFUL_STEPS", "10"))


@pytest.fixture
def catalogue(db):
    """Something to book, buy and subscribe to, so that sequences get past their first call."""
    ResourceFactory()
    ServiceFactory()
    VariantFactory()
    PlanFactory()
    ToyFactory.create_batch(3)


def workflow(headers: dict[str, str]):
    """The schema's state machine, calling as one caller and checking each answer."""

    class Workflow(schema.as_state_machine()):
        """Each sequence starts from the same state: what it wrote is rolled back (a savepoint)
        and the cache emptied. Hypothesis keeps a tree of the choices it made, and which call
        can come next depends on what earlier answers created; with the state of earlier
        sequences carried over, the same choices would meet other answers and hypothesis would
        stop the run as FlakyStrategyDefinition."""

        def setup(self):
            cache.clear()
            self.savepoint = transaction.savepoint()

        def teardown(self):
            transaction.savepoint_rollback(self.savepoint)
            cache.clear()

        def get_call_kwargs(self, case):
            return {"headers": headers}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            designed = response.status_code == 503  # documented where it can happen (test_api_fuzz)
            case.validate_response(
                response,
                checks=[c for c in CHECKS if not (designed and c is checks.not_a_server_error)],
                transport_kwargs=kwargs,
            )

    return Workflow


@pytest.mark.django_db
@pytest.mark.parametrize("caller", ["customer", "staff"])
def test_call_sequences_that_chain_created_ids_answer_as_the_schema_says(caller, callers, catalogue):  # noqa: F811
    workflow(callers[caller]).run(
        settings=settings(
            max_examples=SEQUENCES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            # CI's short run draws from a fixed seed; a long run explores at random.
            derandomize="TEST_FUZZ_STATEFUL_EXAMPLES" not in os.environ,
            database=None,
            # The database keeps what earlier sequences made, so a failing sequence does not
            # replay alike: report it as found rather than shrink it.
            phases=[Phase.explicit, Phase.generate],
        )
    )
