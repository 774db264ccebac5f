"""Pure helpers for talking to Asterisk (AMI wire forms); the client is smsd.asterisk.ami."""
