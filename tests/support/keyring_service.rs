//! Placeholder: a gnome-keyring-daemon in dbus-run-session for tests.
