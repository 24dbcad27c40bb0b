"""The console's API tokens page."""

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache

from polaris.http import AuthenticatedHttpRequest, post_only, staff_only
from sessions_app import selectors
from sessions_app.forms import ApiTokenForm
from sessions_app.models import ApiToken
from sessions_app.new_token import new_token_forget, new_token_read, new_token_redirect
from sessions_app.services import api_token_create, api_token_revoke


@staff_only
@never_cache
def api_token_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The signed-in staff member's API tokens; a POST creates one, then redirects
    to this page, which shows it once."""
    form = ApiTokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        _, raw_token = api_token_create(
            user=request.user,
            name=form.cleaned_data["name"],
            expires_at=form.expires_at(),
        )
        return new_token_redirect(
            request, raw_token=raw_token, to=reverse("sessions_app:api-token-list")
        )
    context = {
        "section": "api-tokens",
        "form": form,
        "new_token": new_token_read(request),
        "tokens": selectors.api_token_list(user=request.user),
    }
    response = render(request, "sessions_app/api_token_list.html", context)
    return new_token_forget(request, response)


@staff_only
@post_only("sessions_app:api-token-list")
def api_token_revoke_view(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=pk, user=request.user)
    api_token_revoke(token=token)
    messages.success(request, f"Token {token.prefix}… revoked; it no longer works.")
    return redirect("sessions_app:api-token-list")
