from jobtower.tethys import TethysAppBase  # was: from tethys_sdk.base import TethysAppBase


class TethysTestApp(TethysAppBase):
    name = "Tethys Test App"
    package = "tethys_test_app"
    root_url = "tethys-test-app"
