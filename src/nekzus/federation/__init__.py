"""Federation: several Nekzus instances sharing one app catalog over an authenticated channel."""
