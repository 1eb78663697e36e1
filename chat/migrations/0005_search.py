"""The full-text index behind search (``chat/search.py``), per database, filled from what is stored.

SQLite: FTS5 tables for message text and titles, entries removed by triggers when rows are deleted.
PostgreSQL: a ``tsvector`` column on messages with a GIN index, and a GIN index on titles by
expression. Neither database sees the other's objects, so the model state is unchanged.
"""

from django.db import migrations

SQLITE_FORWARD = [
    "CREATE VIRTUAL TABLE chat_message_fts USING fts5(owner, body)",
    "CREATE VIRTUAL TABLE chat_title_fts USING fts5(conversation_id UNINDEXED, owner, title)",
    "CREATE TRIGGER chat_message_fts_forget AFTER DELETE ON chat_message BEGIN "
    "DELETE FROM chat_message_fts WHERE rowid = old.id; END",
    "CREATE TRIGGER chat_title_fts_forget AFTER DELETE ON chat_conversation BEGIN "
    "DELETE FROM chat_title_fts WHERE conversation_id = old.id; END",
    "INSERT INTO chat_message_fts (rowid, owner, body) SELECT m.id, 'u' || c.owner_id, m.content "
    "FROM chat_message AS m JOIN chat_conversation AS c ON c.id = m.conversation_id "
    "WHERE m.status != 'streaming'",
    "INSERT INTO chat_title_fts (conversation_id, owner, title) "
    "SELECT id, 'u' || owner_id, title FROM chat_conversation",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS chat_message_fts_forget",
    "DROP TRIGGER IF EXISTS chat_title_fts_forget",
    "DROP TABLE IF EXISTS chat_message_fts",
    "DROP TABLE IF EXISTS chat_title_fts",
]
POSTGRES_FORWARD = [
    "ALTER TABLE chat_message ADD COLUMN search_vector tsvector",
    "UPDATE chat_message AS m SET search_vector = "
    "to_tsvector('simple', 'u' || c.owner_id) || to_tsvector('simple', m.content) "
    "FROM chat_conversation AS c WHERE c.id = m.conversation_id AND m.status != 'streaming'",
    "CREATE INDEX chat_message_search ON chat_message USING gin (search_vector)",
    "CREATE INDEX chat_conversation_title_search ON chat_conversation "
    "USING gin (to_tsvector('simple', title))",
]
POSTGRES_BACKWARD = [
    "DROP INDEX IF EXISTS chat_conversation_title_search",
    "DROP INDEX IF EXISTS chat_message_search",
    "ALTER TABLE chat_message DROP COLUMN IF EXISTS search_vector",
]


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        for statement in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [("chat", "0004_titles_context_preferences")]

    operations = [
        migrations.RunPython(
            _run({"sqlite": SQLITE_FORWARD, "postgresql": POSTGRES_FORWARD}),
            _run({"sqlite": SQLITE_BACKWARD, "postgresql": POSTGRES_BACKWARD}),
        )
    ]
