"""The user list staff search: e-mail, name, when they joined, whether they are staff."""

import pytest

from tests.factories import SuperuserFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_the_user_list_shows_names_and_finds_people_by_name(client):
    ada = UserFactory(first_name="Ada", last_name="Lovelace")
    other = UserFactory(first_name="Grace", last_name="Hopper")
    client.force_login(SuperuserFactory())

    page = client.get("/admin/accounts/user/", {"q": "lovelace"}).content.decode()

    assert '<td class="field-name">Ada Lovelace</td>' in page
    assert ada.email in page and other.email not in page
    assert "field-date_joined" in page and "field-is_staff" in page
