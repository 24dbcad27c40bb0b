"""factory_boy factories for the sync tables (.build() needs no database)."""

from datetime import timedelta
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.utils import timezone

from sync.models import (
    Charger,
    SyncedTransactionEvent,
    SyncRun,
    TransactionSyncState,
    UserMapping,
)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]

    username = factory.Sequence(lambda n: f"driver{n}@example.com")
    email = factory.LazyAttribute(lambda user: user.username)
    password = factory.django.Password("driver")


class StaffFactory(UserFactory):
    """Staff as operators set them up: with Django's permissions to add and change
    user mappings, unless made with `may_change_mappings=False`."""

    username = factory.Sequence(lambda n: f"staff{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    is_staff = True

    class Meta:
        skip_postgeneration_save = True

    @factory.post_generation
    def may_change_mappings(user, create: bool, extracted: object, **kwargs: object):
        if create and extracted is not False:
            user.user_permissions.add(
                *Permission.objects.filter(
                    content_type__app_label="sync",
                    codename__in=["add_usermapping", "change_usermapping"],
                )
            )


class UserMappingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = UserMapping

    steve_ocpp_id_tag = factory.Sequence(lambda n: f"TAG-{n:04d}")
    user = factory.SubFactory(UserFactory)
    label = factory.LazyAttribute(lambda mapping: f"Car of {mapping.user.username}")


class ChargerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Charger
        django_get_or_create = ["charge_box_id", "connector_id"]

    charge_box_id = factory.Sequence(lambda n: f"CP-{n:03d}")
    connector_id = 1
    friendly_name = factory.Sequence(lambda n: f"Site {n}")
    connector_type = "Type 2"
    max_power_kw = Decimal("22")


class SyncRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SyncRun

    kind = SyncRun.Kind.TRANSACTIONS
    trigger = SyncRun.Trigger.BEAT
    status = SyncRun.Status.SUCCEEDED
    started_at = factory.LazyFunction(timezone.now)
    finished_at = factory.LazyAttribute(
        lambda run: run.started_at + timedelta(seconds=1)
    )


class ResyncRunFactory(SyncRunFactory):
    """A "Resync now" run; pass steve_transaction_id."""

    kind = SyncRun.Kind.TRANSACTION
    trigger = SyncRun.Trigger.MANUAL


class TransactionSyncStateFactory(factory.django.DjangoModelFactory):
    """A session; pass kwh_delivered and use `with_events` to keep the invariant."""

    class Meta:
        model = TransactionSyncState

    steve_transaction_id = factory.Sequence(lambda n: 1000 + n)
    charger = factory.SubFactory(ChargerFactory)
    charge_box_id = factory.LazyAttribute(lambda s: s.charger.charge_box_id)
    connector_id = factory.LazyAttribute(lambda s: s.charger.connector_id)
    ocpp_id_tag = "TAG-UNMAPPED"
    started_at = factory.LazyFunction(lambda: timezone.now() - timedelta(hours=1))
    meter_start_wh = 100_000
    meter_last_wh = factory.LazyAttribute(
        lambda s: s.meter_start_wh + int(s.kwh_delivered * 1000)
    )
    kwh_delivered = Decimal("0.000")
    last_synced_at = factory.LazyFunction(timezone.now)
    updated_at = factory.LazyFunction(timezone.now)

    class Params:
        # Stopped by hand in SteVe ten minutes ago, and the station, told
        # nothing, still sent a reading a minute ago.
        charging_past_manual_stop = factory.Trait(
            stopped_at=factory.LazyFunction(
                lambda: timezone.now() - timedelta(minutes=10)
            ),
            is_finalized=True,
            stop_event_actor="manual",
            last_reading_after_stop_at=factory.LazyFunction(
                lambda: timezone.now() - timedelta(minutes=1)
            ),
        )


def session_with_energy(
    *, kwh: Decimal, reading_at: object = None, **fields: object
) -> TransactionSyncState:
    """A session with one started and one progress event carrying all its energy."""
    session = TransactionSyncStateFactory(kwh_delivered=kwh, **fields)
    at = reading_at or session.started_at + timedelta(minutes=30)
    SyncedTransactionEvent.objects.bulk_create(
        [
            SyncedTransactionEvent(
                transaction=session,
                event_type="started",
                meter_wh=session.meter_start_wh,
                reading_at=session.started_at,
                kwh_delta=Decimal("0.000"),
                ocpp_id_tag=session.ocpp_id_tag,
            ),
            SyncedTransactionEvent(
                transaction=session,
                event_type="progress",
                meter_wh=session.meter_last_wh,
                reading_at=at,
                kwh_delta=kwh,
                ocpp_id_tag=session.ocpp_id_tag,
            ),
        ]
    )
    return session
