"""API tokens, as the console and the portal list them."""

from django.contrib.auth.models import User
from django.db.models import QuerySet

from sessions_app.models import ApiToken


def api_token_list(*, user: User) -> QuerySet[ApiToken]:
    """`user`'s API tokens, newest first, revoked ones included; the console's
    and the portal's token pages both list these."""
    return ApiToken.objects.filter(user=user).order_by("-created_at", "-id")
