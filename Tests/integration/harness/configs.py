"""Config templates shared by several test modules. ``{name}`` placeholders are filled by the
``substitutions`` fixture (see conftest.py); everything else is proxy.conf as the user writes it."""

# Every auth type on its own path prefix of the main upstream, a deny route, a read-only route, a
# small body limit, a plain-HTTP upstream, a connect-to route, and a catch-all for the main upstream.
STANDARD = """\
# credproxy integration tests: the standard config
listen 127.0.0.1:0
ca-file {ca}
connect-timeout 5s
request-timeout 30s

route localhost:{upstream_port}/bearer {
  auth bearer env:{env_bearer}
}
route localhost:{upstream_port}/header {
  auth header X-Api-Key env:{env_header}
}
route localhost:{upstream_port}/basic {
  auth basic {basic_user} env:{env_basic_password}
}
route localhost:{upstream_port}/literal {
  auth bearer "{literal_secret}"
}
route localhost:{upstream_port}/filetoken {
  auth bearer file:{secret_file}
}
route localhost:{upstream_port}/deny-me {
  deny
}
route localhost:{upstream_port}/readonly {
  methods GET HEAD
}
route localhost:{upstream_port}/small {
  max-body 1k
}
route localhost:{plain_port} {
  upstream http
}
route upstream.itest.invalid:8443 {
  connect-to 127.0.0.1:{upstream_port}
}
route localhost:{upstream_port} {
  auth none
}
"""
