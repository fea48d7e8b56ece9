from django.contrib.admin.apps import AdminConfig as DjangoAdminConfig


class AdminConfig(DjangoAdminConfig):
    """Django's admin app with FastCMS's admin site (records listed per collection)."""

    default_site = "fastcms.admin.AdminSite"
