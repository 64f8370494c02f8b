-- Filters' interest sets: the users a filter plugin has rules for (manifest
-- `interest = "declared"`); the host consults the filter only for stanzas of these users.
CREATE TABLE plugin_interest (
    plugin TEXT NOT NULL,
    user_jid TEXT NOT NULL,
    PRIMARY KEY (plugin, user_jid)
);
CREATE INDEX plugin_interest_user ON plugin_interest (user_jid);
