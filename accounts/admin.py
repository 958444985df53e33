from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from accounts.models import User


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    ordering = ["email"]
    list_display = ["email", "name", "phone", "preferred_language", "is_staff", "is_active", "date_joined"]
    list_filter = [
        "is_staff",
        "is_superuser",
        "is_active",
        "preferred_language",
        "email_opt_out",
        "sms_opt_out",
        ("date_joined", admin.DateFieldListFilter),
    ]
    search_fields = ["email", "phone", "first_name", "last_name"]
    search_help_text = "E-mail, phone, first or last name"
    date_hierarchy = "date_joined"
    fieldsets = [
        (None, {"fields": ["email", "password"]}),
        ("Profile", {"fields": ["first_name", "last_name", "phone", "preferred_language"]}),
        ("Notifications", {"fields": ["email_opt_out", "sms_opt_out"]}),
        ("Permissions", {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]}),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]})]

    @admin.display(description="name", ordering="last_name")
    def name(self, user):
        return user.get_full_name()
