"""The one-key PostgreSQL advisory locks Polaris takes on its database, kept in
one place so that no two uses share a key: a demo and a seed once did, and each
then reported the other as itself.

Two-key locks are a space apart (sessions_app.charging.tags.CARD_CHOICE_LOCK).
"""

# Everything that writes transactions: sync runs, Resync now, backfills.
TRANSACTIONS_LOCK = 7_316_001
# The charger probe.
CHARGERS_LOCK = 7_316_002
# Held by a running demo on its database for its whole life.
DEMO_LOCK = 7_316_003
# A seed_scale filling the database: two at once would take the same new ids.
SEED_LOCK = 7_316_004
# A card's spelling: a mapping saved and a sync batch written agree on the one
# letter case its sessions are stored in (sync.services.mappings).
TAG_SPELLING_LOCK = 7_316_005
