"""The web console under /ui/: server-rendered pages, one small script, live by SSE."""
