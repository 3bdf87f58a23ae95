"""The fields of tap-amplitude's records that target-posthog reads back: named once, for the
plugin that writes them and the one that reads them (tap-amplitude's README, "Records")."""

# Amplitude writes these times as `YYYY-MM-DD HH:MM:SS.ffffff`, UTC without a zone;
# tap-amplitude writes them as `YYYY-MM-DDTHH:MM:SS.ffffff+00:00`, and keeps any other form it
# converts in EXTRA_FIELD[AS_EXPORTED_KEY].
TIME_FIELDS = (
    "event_time",
    "client_event_time",
    "client_upload_time",
    "server_received_time",
    "server_upload_time",
    "processed_time",
    "user_creation_time",
)
# Where a record keeps the export's fields the schema does not name, and the original of any
# value that could not be converted exactly to its field's type.
EXTRA_FIELD = "additional_properties"
RESERVED_KEY = "reserved_names"  # in EXTRA_FIELD: the export's fields named like the tap's
AS_EXPORTED_KEY = "as_exported"  # in EXTRA_FIELD: values the tap converted, as exported
NUMBER_TEXTS_KEY = "number_texts"  # in EXTRA_FIELD: texts of numbers a double changes (1.10)
