from django.urls import path

from dashboard import live_views, session_views, settings_views, simulator_views, views

app_name = "dashboard"

urlpatterns = [
    path("", views.home, name="home"),
    path("log/", live_views.log, name="log"),
    path("orders/", live_views.orders_board, name="orders"),
    path("inbox/", live_views.inbox, name="inbox"),
    *live_views.urlpatterns,  # the live pages' own routes (H5)
    path("welcome/<str:token>/", views.welcome, name="welcome"),
    path("team/", views.team, name="team"),
    path("team/<int:user_id>/remove/", views.team_remove, name="team-remove"),
    path("sessions/", session_views.sessions_list, name="sessions"),
    path("sessions/add/", session_views.session_add, name="session-add"),
    path("sessions/<uuid:public_id>/card/", session_views.session_card, name="session-card"),
    path("sessions/<uuid:public_id>/pair/", session_views.session_pair, name="session-pair"),
    path("sessions/<uuid:public_id>/edit/", session_views.session_edit, name="session-edit"),
    path("sessions/<uuid:public_id>/delete/", session_views.session_remove, name="session-delete"),
    path(
        "sessions/<uuid:public_id>/history/",
        session_views.session_history,
        name="session-history",
    ),
    path(
        "sessions/<uuid:public_id>/<slug:action>/",
        session_views.session_action,
        name="session-action",
    ),
    path("simulator/", simulator_views.simulator, name="simulator"),
    path(
        "simulator/<uuid:public_id>/messages/",
        simulator_views.simulator_messages,
        name="simulator-messages",
    ),
    path(
        "simulator/<uuid:public_id>/write/", simulator_views.simulator_write, name="simulator-write"
    ),
    path("simulator/<uuid:public_id>/scan/", simulator_views.simulator_scan, name="simulator-scan"),
]

urlpatterns += [
    path("settings/", settings_views.settings_page, name="settings"),
    path("settings/ordering/", settings_views.settings_ordering, name="settings-ordering"),
    path("settings/bot-pause/", settings_views.settings_bot_pause, name="settings-bot-pause"),
    path("settings/limits/", settings_views.settings_limits, name="settings-limits"),
    path(
        "settings/sessions/<uuid:public_id>/",
        settings_views.settings_session,
        name="settings-session",
    ),
    path("settings/webhooks/add/", settings_views.webhook_add, name="webhook-add"),
    path(
        "settings/webhooks/<int:endpoint_id>/deliveries/",
        settings_views.webhook_deliveries,
        name="webhook-deliveries",
    ),
    path(
        "settings/webhooks/<int:endpoint_id>/<slug:action>/",
        settings_views.webhook_action,
        name="webhook-action",
    ),
    path("settings/api-keys/add/", settings_views.api_key_add, name="api-key-add"),
    path(
        "settings/api-keys/<int:key_id>/revoke/",
        settings_views.api_key_remove,
        name="api-key-revoke",
    ),
    path("menu/", settings_views.menu, name="menu"),
    path("menu/<int:item_id>/edit/", settings_views.menu_item_edit, name="menu-item-edit"),
    path(
        "menu/<int:item_id>/<slug:action>/",
        settings_views.menu_item_action,
        name="menu-item-action",
    ),
]
