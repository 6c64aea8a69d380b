//! The tables credshift creates in an empty database.

/// agent-prompttrain's migration 013 tables, created on first write into
/// an empty database.
pub const SCHEMA_SQL: &str = "
CREATE TABLE IF NOT EXISTS accounts (
  account_id VARCHAR(255) PRIMARY KEY,
  account_name VARCHAR(255) UNIQUE NOT NULL,
  credential_type VARCHAR(20) NOT NULL CHECK (credential_type IN ('api_key', 'oauth')),
  api_key_encrypted TEXT,
  oauth_access_token_encrypted TEXT,
  oauth_refresh_token_encrypted TEXT,
  oauth_expires_at BIGINT,
  oauth_scopes TEXT[],
  oauth_is_max BOOLEAN DEFAULT false,
  is_active BOOLEAN DEFAULT true,
  created_at TIMESTAMPTZ DEFAULT NOW(),
  updated_at TIMESTAMPTZ DEFAULT NOW(),
  last_used_at TIMESTAMPTZ,
  CONSTRAINT api_key_required CHECK (
    (credential_type = 'api_key' AND api_key_encrypted IS NOT NULL) OR
    (credential_type = 'oauth' AND oauth_access_token_encrypted IS NOT NULL AND oauth_refresh_token_encrypted IS NOT NULL))
);
CREATE TABLE IF NOT EXISTS trains (
  train_id VARCHAR(255) PRIMARY KEY,
  train_name VARCHAR(255),
  description TEXT,
  client_api_keys_hashed TEXT[],
  slack_config JSONB,
  default_account_id VARCHAR(255) REFERENCES accounts(account_id) ON DELETE SET NULL,
  is_active BOOLEAN DEFAULT true,
  created_at TIMESTAMPTZ DEFAULT NOW(),
  updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE TABLE IF NOT EXISTS train_account_mappings (
  train_id VARCHAR(255) NOT NULL REFERENCES trains(train_id) ON DELETE CASCADE,
  account_id VARCHAR(255) NOT NULL REFERENCES accounts(account_id) ON DELETE CASCADE,
  priority INTEGER DEFAULT 0,
  created_at TIMESTAMPTZ DEFAULT NOW(),
  PRIMARY KEY (train_id, account_id)
);
CREATE INDEX IF NOT EXISTS idx_accounts_type ON accounts(credential_type);
CREATE INDEX IF NOT EXISTS idx_accounts_active ON accounts(is_active) WHERE is_active = true;
CREATE INDEX IF NOT EXISTS idx_accounts_last_used ON accounts(last_used_at);
CREATE INDEX IF NOT EXISTS idx_trains_active ON trains(is_active) WHERE is_active = true;
CREATE INDEX IF NOT EXISTS idx_trains_default_account ON trains(default_account_id);
CREATE INDEX IF NOT EXISTS idx_train_mappings_train ON train_account_mappings(train_id);
CREATE INDEX IF NOT EXISTS idx_train_mappings_account ON train_account_mappings(account_id);
CREATE INDEX IF NOT EXISTS idx_train_mappings_priority ON train_account_mappings(train_id, priority);
";
