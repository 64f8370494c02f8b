-- Per-plugin key/value storage (wit: poolxmpp:plugin/storage).
CREATE TABLE plugin_kv (
    plugin TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (plugin, key)
);
