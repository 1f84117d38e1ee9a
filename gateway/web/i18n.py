"""The portal's words in German and English, and which language a request gets.

Language order (issues #5, #17): the logged-in user's stored setting, else the language the
visitor chose with the switch on every page (a cookie), else the browser's Accept-Language
(the first of de/en it prefers), else German. Every key is a (German, English) pair; an
unknown key shows itself, so a missing text is visible, never an error. A text that names a
count is a plural key (`text_n`): one form for exactly one, another for every other number,
which is the rule of both languages; the count is written with the language's digits.
"""

from __future__ import annotations

from gateway.web.formats import format_number

LANGUAGES = ("de", "en")
DEFAULT_LANGUAGE = "de"

# key: (German, English)
_TEXTS: dict[str, tuple[str, str]] = {
    "portal": ("Kundenportal", "Customer portal"),
    "login": ("Anmelden", "Log in"),
    "logout": ("Abmelden", "Log out"),
    "logout_question": ("Möchten Sie sich abmelden?", "Do you want to log out?"),
    "username": ("Benutzername", "Username"),
    "password": ("Passwort", "Password"),
    "password_lost": ("Passwort verloren?", "Password lost?"),
    "login_failed": ("Benutzername oder Passwort ist falsch. Bitte Groß- und Kleinschreibung "
                     "beachten.", "Wrong username or password. Mind upper and lower case."),
    "rate_limited": ("Zu viele Versuche. Bitte warten Sie einige Minuten.",
                     "Too many attempts. Please wait a few minutes."),
    "lost_intro": ("Geben Sie Ihren Benutzernamen ein (Groß- und Kleinschreibung beachten). "
                   "Sie erhalten eine E-Mail mit einem Bestätigungslink an die für Sie "
                   "hinterlegte Adresse. So melden Sie sich auch zum ersten Mal an.",
                   "Enter your username (mind upper and lower case). You will get an email "
                   "with a confirmation link at the address stored for you. This is also how "
                   "you log in for the first time."),
    "request_password": ("Neues Passwort anfordern", "Request a new password"),
    "lost_sent": ("Wenn es diesen Benutzernamen gibt, ist eine E-Mail mit einem "
                  "Bestätigungslink unterwegs. Der Link ist {minutes} Minuten gültig.",
                  "If this username exists, an email with a confirmation link is on its "
                  "way. The link is valid for {minutes} minutes."),
    "confirm_title": ("Neues Passwort bestätigen", "Confirm the new password"),
    "confirm_intro": ("Bestätigen Sie, dass Sie ein neues Passwort für „{username}“ möchten. "
                      "Es wird an Ihre hinterlegte E-Mail-Adresse gesendet.",
                      "Confirm that you want a new password for \"{username}\". It will be "
                      "sent to the email address stored for you."),
    "confirm_set_intro": ("Wählen Sie ein neues Passwort für „{username}“.",
                          "Choose a new password for \"{username}\"."),
    "confirm": ("Bestätigen", "Confirm"),
    "token_invalid": ("Dieser Link ist ungültig, abgelaufen oder wurde schon benutzt. Fordern "
                      "Sie bitte einen neuen an.", "This link is invalid, has expired or was "
                      "used already. Please request a new one."),
    "password_mailed": ("Ein neues Passwort wurde an Ihre E-Mail-Adresse gesendet. Melden Sie "
                        "sich damit an; danach wählen Sie Ihr eigenes Passwort.",
                        "A new password has been sent to your email address. Log in with it; "
                        "then you choose your own password."),
    "password_set": ("Ihr Passwort ist gesetzt. Sie können sich jetzt anmelden.",
                     "Your password is set. You can log in now."),
    "change_password": ("Passwort ändern", "Change password"),
    "must_change": ("Bitte wählen Sie jetzt Ihr eigenes Passwort.",
                    "Please choose your own password now."),
    "current_password": ("Aktuelles Passwort", "Current password"),
    "new_password": ("Neues Passwort", "New password"),
    "repeat_password": ("Neues Passwort wiederholen", "Repeat the new password"),
    "password_too_short": ("Das Passwort muss mindestens {n} Zeichen lang sein.",
                           "The password must have at least {n} characters."),
    "password_mismatch": ("Die beiden Passwörter stimmen nicht überein.",
                          "The two passwords differ."),
    "password_same": ("Das neue Passwort muss sich vom bisherigen unterscheiden.",
                      "The new password must differ from the current one."),
    "current_wrong": ("Das aktuelle Passwort ist falsch.", "The current password is wrong."),
    "password_changed": ("Ihr Passwort wurde geändert. Alle anderen Sitzungen wurden beendet.",
                         "Your password has been changed. All other sessions have ended."),
    "save": ("Speichern", "Save"),
    "my_tickets": ("Meine Tickets", "My tickets"),
    "templates": ("Ticketvorlagen", "Ticket templates"),
    "filter_all": ("Alle", "All"),
    "filter_open": ("Offen", "Open"),
    "filter_closed": ("Geschlossen", "Closed"),
    "search": ("Suche", "Search"),
    "search_label": ("Suchen in Nummer, Betreff und Text", "Search number, subject and text"),
    "search_short": ("Suchbegriffe unter 3 Zeichen werden nur in Ticketnummer und Betreff "
                     "gesucht, nicht im Text.",
                     "Search terms under 3 characters are looked up in ticket numbers and "
                     "subjects only, not in the text."),
    "sort": ("Sortierung", "Sort by"),
    "sort_number": ("Ticketnummer (neueste zuerst)", "Ticket number (newest first)"),
    "sort_number-asc": ("Ticketnummer (älteste zuerst)", "Ticket number (oldest first)"),
    "sort_updated": ("Letzte Änderung", "Last change"),
    "sort_title": ("Betreff", "Subject"),
    "sort_state": ("Status", "State"),
    "apply": ("Anwenden", "Apply"),
    "number": ("Ticketnummer", "Ticket number"),
    "ticket": ("Ticket", "Ticket"),
    "subject": ("Betreff", "Subject"),
    "state": ("Status", "State"),
    "age": ("Alter", "Age"),
    "created": ("Erstellt", "Created"),
    "priority": ("Priorität", "Priority"),
    "participants": ("Beteiligte", "Participants"),
    "no_tickets": ("Keine Tickets gefunden.", "No tickets found."),
    "previous": ("Zurück", "Previous"),
    "next": ("Weiter", "Next"),
    "state_new": ("neu", "new"), "state_open": ("offen", "open"),
    "state_pending": ("wartend", "pending"), "state_closed": ("geschlossen", "closed"),
    "prio_1": ("1 sehr niedrig", "1 very low"), "prio_2": ("2 niedrig", "2 low"),
    "prio_3": ("3 normal", "3 normal"), "prio_4": ("4 hoch", "4 high"),
    "prio_5": ("5 sehr hoch", "5 very high"),
    "age_minutes": ("{n} Min.", "{n} min"), "age_hours": ("{n} Std.", "{n} h"),
    "from": ("Von", "From"),
    "attachments": ("Anlagen", "Attachments"),
    "remote_images_removed": ("Externe Bilder wurden aus dieser Nachricht entfernt (Anzahl: "
                              "{n}), damit der Absender nicht sieht, wann sie gelesen wird.",
                              "Remote images were removed from this message (count: {n}), "
                              "so the sender cannot see when it is read."),
    "quoted": ("Zitierter Verlauf", "Quoted history"),
    "reply": ("Antworten", "Reply"),
    "text": ("Text", "Text"),
    "send": ("Absenden", "Send"),
    "reply_empty": ("Bitte geben Sie einen Text ein oder hängen Sie eine Datei an.",
                    "Please enter a text or attach a file."),
    "reply_closed": ("Dieses Ticket ist geschlossen; bitte eröffnen Sie ein neues.",
                     "This ticket is closed; please open a new one."),
    "too_large": ("Die Anlagen sind zu groß (höchstens {size} zusammen).",
                  "The attachments are too large (at most {size} together)."),
    "group_change": ("Änderungsanforderungen", "Change requests"),
    "group_incident": ("Störungsmeldungen", "Incident reports"),
    "group_service-request": ("Bedarfsanforderungen", "Service requests"),
    "no_templates": ("Für Ihre Organisation sind keine Vorlagen verfügbar.",
                     "No templates are available to your organisation."),
    "guide": ("Gesprächsleitfaden", "Conversation guide"),
    "required_hint": ("Felder mit * sind Pflichtfelder.", "Fields marked * are required."),
    "required": ("Pflichtfeld", "required"),
    "by_mail": ("Per E-Mail:", "By email:"),
    "bad_request": ("Die Anfrage ist ungültig. Bitte prüfen Sie den Link oder das Formular.",
                    "The request is invalid. Please check the link or the form."),
    "invalid_value": ("Ungültige Angabe: {fields}. Bitte prüfen Sie den Link oder das "
                      "Formular.", "Invalid value: {fields}. Please check the link or the "
                      "form."),
    "priority_invalid": ("Die Priorität muss zwischen 1 (sehr niedrig) und 5 (sehr hoch) "
                         "liegen.", "The priority must be between 1 (very low) and 5 (very "
                         "high)."),
    "required_missing": ("Bitte füllen Sie alle Pflichtfelder aus: {fields}.",
                         "Please fill in every required field: {fields}."),
    "create_ticket": ("Ticket erstellen", "Create ticket"),
    "created_ticket": ("Ihr Ticket {number} wurde erstellt. Eine Bestätigung ist per E-Mail "
                       "unterwegs.", "Your ticket {number} has been created. An "
                       "acknowledgment is on its way by email."),
    "created_ticket_quiet": ("Ihr Ticket {number} wurde erstellt.",
                             "Your ticket {number} has been created."),
    "replied": ("Ihre Antwort wurde hinzugefügt.", "Your reply has been added."),
    "not_found": ("Nicht gefunden.", "Not found."),
    "forbidden": ("Die Anfrage wurde abgelehnt (Formular abgelaufen?). Bitte laden Sie die "
                  "Seite neu und versuchen Sie es noch einmal.",
                  "The request was refused (form expired?). Please reload the page and try "
                  "again."),
    "error": ("Fehler", "Error"),
    "language": ("Sprache", "Language"),
    "skip": ("Zum Inhalt springen", "Skip to content"),
    # -- file exchange (/files/{token}, the button on the ticket view) --
    "files_title": ("Dateiaustausch", "File exchange"),
    "files_for_ticket": ("Dateien zu Ticket {number}", "Files for ticket {number}"),
    "files_valid_until": ("Dieser Link ist gültig bis {when}. Geben Sie ihn bitte nicht "
                          "weiter: Wer ihn kennt, hat Zugriff auf die Dateien.",
                          "This link is valid until {when}. Please do not pass it on: "
                          "anyone who has it can reach the files."),
    "files_downloads_left": ("Verbleibende Downloads: {n}", "Downloads left: {n}"),
    "files_none": ("Noch keine Dateien.", "No files yet."),
    "files_list": ("Dateien", "Files"),
    "file_name": ("Name", "Name"),
    "file_size": ("Größe", "Size"),
    "file_uploaded": ("Hochgeladen", "Uploaded"),
    "files_upload": ("Dateien hochladen", "Upload files"),
    "files_choose": ("Dateien auswählen (mehrere möglich)", "Choose files (several at once)"),
    "files_invalid": ("Dieser Link ist ungültig oder abgelaufen. Bitten Sie den Service Desk "
                      "um einen neuen.", "This link is invalid or has expired. Please ask "
                      "the service desk for a new one."),
    "files_too_large": ("Die Dateien sind zu groß: höchstens {size} je Datei und {total} "
                        "zusammen in diesem Bereich. Es wurde nichts gespeichert.",
                        "The files are too large: at most {size} per file and {total} "
                        "altogether in this area. Nothing was stored."),
    "files_too_many": ("Zu viele Dateien: höchstens {files} in diesem Bereich. Es wurde "
                       "nichts gespeichert.", "Too many files: at most {files} in this area. "
                       "Nothing was stored."),
    "files_incomplete": ("Der Upload kam nicht vollständig an. Es wurde nichts gespeichert; "
                         "bitte versuchen Sie es noch einmal.", "The upload did not arrive "
                         "complete. Nothing was stored; please try again."),
    "files_empty": ("Bitte wählen Sie mindestens eine Datei.", "Please choose at least one "
                    "file."),
    "files_used_up": ("Die Downloads dieses Links sind aufgebraucht.",
                      "The downloads of this link are used up."),
    "files_back": ("Zurück zum Dateiaustausch", "Back to the file exchange"),
    "files_request": ("Link zum Dateiaustausch anfordern", "Request a file-exchange link"),
    "files_request_intro": ("Für große Dateien: Sie erhalten einen Link, über den Sie "
                            "Dateien zu diesem Ticket hochladen können.",
                            "For large files: you get a link where you can upload files for "
                            "this ticket."),
    "files_created": ("Ihr Link zum Dateiaustausch (auch per E-Mail unterwegs):",
                      "Your file-exchange link (also on its way by email):"),
    "files_created_not_mailed": ("Ihr Link zum Dateiaustausch:", "Your file-exchange link:"),
    # the FAQ (/faq)
    "faq": ("FAQ", "FAQ"),
    "faq_title": ("Häufige Fragen", "Frequently asked questions"),
    "faq_search_label": ("In den FAQ suchen", "Search the FAQ"),
    "faq_categories": ("Kategorien", "Categories"),
    "faq_articles": ("Artikel", "Articles"),
    "faq_empty": ("Hier gibt es noch keine Artikel.", "There are no articles here yet."),
    "faq_language": ("Sprache der Artikel", "Language of the articles"),
    "faq_lang_de": ("Deutsch", "German"), "faq_lang_en": ("Englisch", "English"),
    "faq_lang_all": ("Alle", "All"),
    "faq_results": ("Suchergebnisse für „{q}“", "Search results for \"{q}\""),
    "faq_no_results": ("Kein Artikel gefunden. Versuchen Sie andere Wörter oder stöbern Sie "
                       "in den Kategorien.", "No article found. Try other words or browse "
                       "the categories."),
    "faq_other_languages": ("Treffer in anderen Sprachen anzeigen ({n})",
                            "Show the results in other languages ({n})"),
    "faq_some_words": ("Kein Artikel enthält alle Wörter; diese enthalten einige davon.",
                       "No article contains every word; these contain some of them."),
    "faq_also_searched": ("Auch gesucht: {words}", "Also searched for: {words}"),
    "faq_login_hint": ("Weitere Artikel sehen Sie nach der Anmeldung.",
                       "Log in to see more articles."),
    "faq_customers_only": ("Nur für Kunden", "Customers only"),
    "faq_keywords": ("Stichwörter", "Keywords"),
    "faq_updated": ("Aktualisiert", "Updated"),
    "faq_helpful_question": ("War dieser Artikel hilfreich?", "Was this article helpful?"),
    "faq_yes": ("Ja", "Yes"), "faq_no": ("Nein", "No"),
    "faq_voted": ("Danke für Ihre Bewertung!", "Thank you for your feedback!"),
    "faq_back": ("Zurück zur Übersicht", "Back to the overview"),
    "faq_open_ticket": ("Nicht gelöst? Eröffnen Sie ein Ticket.",
                        "Not solved? Open a ticket."),
}


# key: ((German for one, German for any other number), (English for one, for other)); {n}
# is the count, written with the language's digit grouping
_PLURALS: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "page_of": (("Seite {page} von {pages} ({n} Ticket)", "Seite {page} von {pages} ({n} Tickets)"),
                ("Page {page} of {pages} ({n} ticket)", "Page {page} of {pages} ({n} tickets)")),
    "age_days": (("{n} Tag", "{n} Tage"), ("{n} day", "{n} days")),
    "files_uploaded": (
        ("{n} Datei hochgeladen. Sie ist dem Ticket angehängt; das Service-Desk-Team wurde "
         "benachrichtigt.", "{n} Dateien hochgeladen. Sie sind dem Ticket angehängt; das "
         "Service-Desk-Team wurde benachrichtigt."),
        ("{n} file uploaded. It is attached to the ticket and the service desk has been "
         "told.", "{n} files uploaded. They are attached to the ticket and the service desk "
         "has been told.")),
    "files_limits": (
        ("Höchstens {size} je Datei, {n} Datei und {total} zusammen; frei: {left}.",
         "Höchstens {size} je Datei, {n} Dateien und {total} zusammen; frei: {left}."),
        ("At most {size} per file, {n} file and {total} altogether; left: {left}.",
         "At most {size} per file, {n} files and {total} altogether; left: {left}.")),
    "faq_count": (("{n} Artikel", "{n} Artikel"), ("{n} article", "{n} articles")),
    "faq_votes_yes": (("{n} fand ihn hilfreich", "{n} fanden ihn hilfreich"),
                      ("{n} found it helpful", "{n} found it helpful")),
    "faq_votes_no": (("{n} nicht.", "{n} nicht."), ("{n} did not.", "{n} did not.")),
}


def text(language: str, key: str, **values: object) -> str:
    pair = _TEXTS.get(key)
    if pair is None:
        return key
    template = pair[0] if language == "de" else pair[1]
    return template.format(**values) if values else template


def text_n(language: str, key: str, n: int, **values: object) -> str:
    """The plural key's form for `n` (exactly 1: the singular), `n` in the language's
    digits."""
    forms = _PLURALS.get(key)
    if forms is None:
        return key
    one, other = forms[0] if language == "de" else forms[1]
    return (one if n == 1 else other).format(n=format_number(n, language), **values)


def all_keys() -> list[str]:
    return list(_TEXTS)


def all_texts() -> dict[str, tuple[str, str]]:
    """Every key with its (German, English) pair; a plural key once per form, as
    `key[one]` and `key[other]`."""
    found = dict(_TEXTS)
    for key, ((de_one, de_other), (en_one, en_other)) in _PLURALS.items():
        found[f"{key}[one]"] = (de_one, en_one)
        found[f"{key}[other]"] = (de_other, en_other)
    return found


def from_accept_language(header: str | None) -> str | None:
    """The first of our languages in an Accept-Language header (RFC 9110 §12.5.4), by q."""
    if not header:
        return None
    choices: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and quality > 0:
            choices.append((-quality, position, primary))
    return min(choices)[2] if choices else None


def choose_language(user_language: str | None, accept_language: str | None,
                    chosen: str | None = None) -> str:
    """The stored language of a logged-in user, else the one `chosen` with the switch
    (its cookie), else the browser's, else German."""
    for language in (user_language, chosen):
        if language in LANGUAGES:
            return str(language)
    return from_accept_language(accept_language) or DEFAULT_LANGUAGE
