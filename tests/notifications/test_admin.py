"""The staff admin for notifications: the delivery log (filters, search, resend), rules with
their preview from a real object, templates written in the admin."""

import pytest
from django.contrib.auth.models import Permission

from notifications.models import MessageTemplate, Notification, Rule
from tests.factories import StaffFactory, SuperuserFactory, UserFactory
from tests.notifications.factories import NotificationFactory
from tests.notifications.test_delivery import confirmed_booking, handle, last_event

pytestmark = pytest.mark.django_db
Status = Notification.Status


@pytest.fixture
def admin_client(client):
    client.force_login(SuperuserFactory())
    return client


def test_the_log_filters_searches_and_shows_a_message(admin_client):
    anna = UserFactory(email="anna@example.com")
    failed = NotificationFactory(
        user=anna, channel="email", address="anna@example.com", status=Status.FAILED, last_error="smtp 550"
    )
    for query in (
        "",
        "?status__exact=failed&channel__exact=email",
        "?q=anna%40example.com",
        f"?q={failed.public_id}",
    ):
        page = admin_client.get(f"/admin/notifications/notification/{query}").content.decode()
        assert failed.public_id in page, query
    assert (
        failed.public_id
        not in admin_client.get("/admin/notifications/notification/?status__exact=sent").content.decode()
    )
    detail = admin_client.get(f"/admin/notifications/notification/{failed.pk}/change/")
    assert detail.status_code == 200 and "smtp 550" in detail.content.decode()
    assert 'name="_save"' not in detail.content.decode()  # the log is read-only


def test_resend_is_a_new_row_of_its_own_sent_again(
    admin_client, django_capture_on_commit_callbacks, settings
):
    anna = UserFactory()
    confirmed_booking(anna)
    email = handle(last_event("booking.confirmed"))["email"]
    Notification.objects.filter(pk=email.pk).update(
        status=Status.FAILED, last_error="smtp 451 (after 5 attempts)"
    )

    with django_capture_on_commit_callbacks() as callbacks:
        page = admin_client.post(
            "/admin/notifications/notification/",
            {"action": "resend", "_selected_action": [email.pk]},
            follow=True,
        ).content.decode()

    assert "1 sent again" in page
    copy = Notification.objects.get(resend_of=email)
    assert (copy.status, copy.address, copy.body, copy.event_id) == (
        Status.QUEUED,
        email.address,
        email.body,
        email.event_id,
    )
    assert len(callbacks) == 1  # its task is sent after the commit
    assert Notification.objects.get(pk=email.pk).status == Status.FAILED  # the original stays as it was


def test_resend_is_a_button_on_the_messages_page(admin_client, django_capture_on_commit_callbacks):
    failed = NotificationFactory(channel="email", address="anna@example.com", status=Status.FAILED)
    page = admin_client.get(f"/admin/notifications/notification/{failed.pk}/change/").content.decode()
    assert f"/admin/notifications/notification/{failed.pk}/actions/resend_one/" in page
    url = f"/admin/notifications/notification/{failed.pk}/actions/resend_one/"
    assert admin_client.get(url).status_code == 405  # a button that posts, never a link with an effect

    with django_capture_on_commit_callbacks() as callbacks:
        response = admin_client.post(url, follow=True)

    copy = Notification.objects.get(resend_of=failed)
    assert response.redirect_chain[-1][0] == f"/admin/notifications/notification/{copy.pk}/change/"
    assert f"Sent again as {copy.public_id}." in response.content.decode()
    assert copy.status == Status.QUEUED and len(callbacks) == 1
    queued = admin_client.get(f"/admin/notifications/notification/{copy.pk}/change/").content.decode()
    assert "actions/resend_one/" not in queued  # not while it is on its way

    twice = admin_client.post(url, follow=True).content.decode()  # a double click
    assert "A copy of this message was sent less than a minute ago" in twice
    assert Notification.objects.filter(resend_of=failed).count() == 1


def test_a_message_that_was_never_written_is_not_resent(admin_client):
    broken = NotificationFactory(
        status=Status.FAILED, last_error="template: booking_confirmed has no block sms"
    )

    page = admin_client.post(
        f"/admin/notifications/notification/{broken.pk}/actions/resend_one/", follow=True
    ).content.decode()

    assert "fix the template first" in page
    assert not Notification.objects.filter(resend_of=broken).exists()


def test_staff_without_the_change_permission_cannot_resend(client):
    viewer = StaffFactory()
    viewer.user_permissions.add(Permission.objects.get(codename="view_notification"))
    client.force_login(viewer)
    sent = NotificationFactory(status=Status.SENT)

    page = client.get(f"/admin/notifications/notification/{sent.pk}/change/").content.decode()

    assert "actions/resend_one/" not in page and 'name="_save"' not in page
    assert client.post(f"/admin/notifications/notification/{sent.pk}/actions/resend_one/").status_code == 403
    assert 'value="resend"' not in client.get("/admin/notifications/notification/").content.decode()
    assert not Notification.objects.filter(resend_of=sent).exists()


def test_a_rule_is_edited_and_previewed_with_the_latest_object_or_a_named_one(admin_client):
    customer = UserFactory()
    older = confirmed_booking(customer)
    latest = confirmed_booking(customer, days=4)
    rule = Rule.objects.get(key="booking.confirmed")

    saved = admin_client.post(
        f"/admin/notifications/rule/{rule.pk}/change/",
        {"enabled": "on", "channels": ["email", "inapp"], "template": "booking_confirmed"},
    )
    assert saved.status_code == 302
    rule.refresh_from_db()
    assert rule.channels == ["email", "inapp"]

    page = admin_client.get(f"/admin/notifications/rule/{rule.pk}/preview/").content.decode()
    assert latest.resource.name in page and "sms" in page and "telegram" in page
    named = admin_client.get(
        f"/admin/notifications/rule/{rule.pk}/preview/?object={older.public_id}&language=ru"
    )
    assert named.status_code == 200 and "Бронирование" in named.content.decode()
    missing = admin_client.get(
        f"/admin/notifications/rule/{rule.pk}/preview/?object=bkg_nope"
    ).content.decode()
    assert "bkg_nope" in missing and "errornote" in missing


def test_a_template_written_in_the_admin_replaces_the_file_and_links_to_its_preview(admin_client):
    confirmed_booking(UserFactory())
    rule = Rule.objects.get(key="booking.confirmed")
    source = (
        "{% block subject %}Booked!{% endblock %}{% block text %}See you.{% endblock %}"
        "{% block html %}<p>See you.</p>{% endblock %}{% block sms %}See you{% endblock %}"
        "{% block telegram %}<b>See you</b>{% endblock %}{% block inapp %}See you{% endblock %}"
    )
    page = admin_client.post(
        "/admin/notifications/messagetemplate/add/",
        {"name": "booking_confirmed", "language": "en", "source": source},
        follow=True,
    ).content.decode()
    assert f"/admin/notifications/rule/{rule.pk}/preview/?language=en" in page
    assert MessageTemplate.objects.filter(name="booking_confirmed").exists()
    preview = admin_client.get(f"/admin/notifications/rule/{rule.pk}/preview/?language=en").content.decode()
    assert "Booked!" in preview
