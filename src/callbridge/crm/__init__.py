"""The built-in CRM: contacts, accounts and leads with their phone index,
caller identification, call history and notes. It knows calls only as
records and events."""
