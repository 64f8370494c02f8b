-- Accounts: only SCRAM salted keys are stored, never a password.
CREATE TABLE accounts (
    jid TEXT PRIMARY KEY,
    domain TEXT NOT NULL,
    sha1_salt TEXT NOT NULL,
    sha1_iterations INTEGER NOT NULL,
    sha1_stored_key TEXT NOT NULL,
    sha1_server_key TEXT NOT NULL,
    sha256_salt TEXT NOT NULL,
    sha256_iterations INTEGER NOT NULL,
    sha256_stored_key TEXT NOT NULL,
    sha256_server_key TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX accounts_domain ON accounts (domain);

CREATE TABLE roster (
    owner TEXT NOT NULL,
    contact TEXT NOT NULL,
    name TEXT,
    subscription TEXT NOT NULL,
    ask INTEGER NOT NULL,
    approved INTEGER NOT NULL,
    groups TEXT NOT NULL,
    PRIMARY KEY (owner, contact)
);

CREATE TABLE roster_version (
    owner TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);

-- Inbound subscription requests awaiting the user's answer (RFC 6121 §3.1.3).
CREATE TABLE pending_in (
    owner TEXT NOT NULL,
    contact TEXT NOT NULL,
    stanza TEXT NOT NULL,
    PRIMARY KEY (owner, contact)
);

CREATE TABLE offline (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    owner TEXT NOT NULL,
    stanza TEXT NOT NULL,
    stamp INTEGER NOT NULL
);
CREATE INDEX offline_owner ON offline (owner, id);
