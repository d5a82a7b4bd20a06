"""gunicorn's access log is off unless ``serving.access_log`` asks for it (README "Serving model")."""
from esx.gunicorn_app import access_log
from esx.server import SERVING_DEFAULTS, Config


def test_the_access_log_is_off_by_default():
    config = Config(data_dir="", database_url="", public_url="", smsr_oid="", smdp_oid="")
    assert SERVING_DEFAULTS["access_log"] == "off"
    assert access_log(config.serving_setting("access_log")) is None


def test_the_access_log_goes_where_serving_access_log_says():
    assert access_log("-") == "-"
    assert access_log("/var/log/esx/access.log") == "/var/log/esx/access.log"
    assert access_log("off") is None and access_log(False) is None
