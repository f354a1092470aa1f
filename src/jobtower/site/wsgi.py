"""WSGI entry point of the standalone site."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobtower.site.settings")
application = get_wsgi_application()
