"""Words of the pages behind e-mail links, in every language the e-mails speak."""

from typing import Final

from ce4big.domain import LANGUAGES

DEFAULT_LANGUAGE: Final = "en"

_TEXTS: dict[str, dict[str, str]] = {
    # Layout and the exchange summary.
    "title": {
        "en": "Your exchange link",
        "fr": "Votre lien d'échange",
        "de": "Ihr Link zum Austausch",
        "pl": "Link do Państwa wymiany",
    },
    "request": {"en": "Request", "fr": "Demande", "de": "Anfrage", "pl": "Zgłoszenie"},
    "requester": {
        "en": "Requested by",
        "fr": "Demandé par",
        "de": "Angefragt von",
        "pl": "Zgłaszający",
    },
    "cluster": {"en": "Cluster", "fr": "Cluster", "de": "Cluster", "pl": "Klaster"},
    "cooperation": {
        "en": "Type of cooperation",
        "fr": "Type de coopération",
        "de": "Art der Kooperation",
        "pl": "Rodzaj współpracy",
    },
    "stage": {
        "en": "Current step",
        "fr": "Étape actuelle",
        "de": "Aktueller Schritt",
        "pl": "Obecny etap",
    },
    "outcome": {"en": "Outcome", "fr": "Résultat", "de": "Ergebnis", "pl": "Wynik"},
    "organisation": {
        "en": "Organisation",
        "fr": "Organisation",
        "de": "Organisation",
        "pl": "Organizacja",
    },
    "valid_until": {
        "en": "This link works once, until {date}.",
        "fr": "Ce lien fonctionne une seule fois, jusqu'au {date}.",
        "de": "Dieser Link funktioniert einmal, bis {date}.",
        "pl": "Ten link działa jeden raz, do {date}.",
    },
    "a_member": {
        "en": "a member company",
        "fr": "une entreprise membre",
        "de": "ein Mitgliedsunternehmen",
        "pl": "firma członkowska",
    },
    # What each kind of link asks.
    "heading.introduction": {
        "en": "Introduction request",
        "fr": "Demande de mise en relation",
        "de": "Anfrage zur Kontaktaufnahme",
        "pl": "Prośba o nawiązanie kontaktu",
    },
    "heading.vet": {
        "en": "Vet this exchange request",
        "fr": "Examiner cette demande d'échange",
        "de": "Diese Austauschanfrage prüfen",
        "pl": "Ocena zgłoszenia wymiany",
    },
    "heading.amend": {
        "en": "Amend your request",
        "fr": "Modifier votre demande",
        "de": "Ihre Anfrage überarbeiten",
        "pl": "Poprawa zgłoszenia",
    },
    "heading.shortlist": {
        "en": "Choose the candidates to approach",
        "fr": "Choisir les candidats à contacter",
        "de": "Anzusprechende Kandidaten auswählen",
        "pl": "Wybór kandydatów do kontaktu",
    },
    "heading.host_review": {
        "en": "An introduction into your cluster",
        "fr": "Une mise en relation dans votre cluster",
        "de": "Eine Kontaktaufnahme in Ihrem Cluster",
        "pl": "Nawiązanie kontaktu w Państwa klastrze",
    },
    "heading.slots": {
        "en": "Choose a meeting time",
        "fr": "Choisir l'horaire du rendez-vous",
        "de": "Einen Termin für das Treffen wählen",
        "pl": "Wybór terminu spotkania",
    },
    "heading.survey": {
        "en": "How did the meeting go?",
        "fr": "Comment s'est passé le rendez-vous ?",
        "de": "Wie ist das Treffen verlaufen?",
        "pl": "Jak przebiegło spotkanie?",
    },
    "heading.outcome": {
        "en": "What came of this exchange?",
        "fr": "Qu'est-il ressorti de cet échange ?",
        "de": "Was ist aus diesem Austausch geworden?",
        "pl": "Co wyniknęło z tej wymiany?",
    },
    "heading.view": {
        "en": "Where this exchange stands",
        "fr": "Où en est cet échange",
        "de": "Stand dieses Austauschs",
        "pl": "Stan tej wymiany",
    },
    "lead.introduction": {
        "en": "{requester} ({cluster}) is looking for a partner, and {subject} was proposed. "
        "If you accept, both sides receive each other's contact details by e-mail. "
        "If you decline, nobody will contact you about this request.",
        "fr": "{requester} ({cluster}) recherche un partenaire, et {subject} a été proposé. "
        "Si vous acceptez, chacun reçoit les coordonnées de l'autre par e-mail. "
        "Si vous déclinez, personne ne vous contactera au sujet de cette demande.",
        "de": "{requester} ({cluster}) sucht einen Partner, und {subject} wurde vorgeschlagen. "
        "Wenn Sie zusagen, erhalten beide Seiten die Kontaktdaten der anderen per E-Mail. "
        "Wenn Sie absagen, wird Sie zu dieser Anfrage niemand kontaktieren.",
        "pl": "{requester} ({cluster}) szuka partnera i zaproponowano organizację {subject}. "
        "Po wyrażeniu zgody obie strony otrzymają e-mailem wzajemnie swoje dane kontaktowe. "
        "W przypadku odmowy nikt nie będzie się z Państwem kontaktował w tej sprawie.",
    },
    "lead.vet": {
        "en": "A member of your cluster sent this request. Approve it to start the search for "
        "partners, ask for changes, or reject it with a reason.",
        "fr": "Un membre de votre cluster a envoyé cette demande. Approuvez-la pour lancer la "
        "recherche de partenaires, demandez des modifications ou refusez-la en donnant un motif.",
        "de": "Ein Mitglied Ihres Clusters hat diese Anfrage gestellt. Genehmigen Sie sie, um die "
        "Partnersuche zu starten, bitten Sie um Änderungen oder lehnen Sie sie begründet ab.",
        "pl": "Członek Państwa klastra przesłał to zgłoszenie. Można je zatwierdzić, aby "
        "rozpocząć szukanie partnerów, poprosić o zmiany albo odrzucić z podaniem powodu.",
    },
    "lead.amend": {
        "en": "Your cluster's broker asked for changes. Edit the request and send it back.",
        "fr": "Le chargé d'affaires de votre cluster a demandé des modifications. "
        "Modifiez la demande et renvoyez-la.",
        "de": "Ihr Cluster hat um Änderungen gebeten. Überarbeiten Sie die Anfrage und "
        "senden Sie sie erneut.",
        "pl": "Opiekun z Państwa klastra poprosił o zmiany. Prosimy poprawić zgłoszenie i "
        "wysłać je ponownie.",
    },
    "lead.shortlist": {
        "en": "The search found these candidates in other clusters. Choose 1 to 5 of them; "
        "their clusters review each one before anyone is contacted.",
        "fr": "La recherche a trouvé ces candidats dans d'autres clusters. Choisissez-en 1 à 5 ; "
        "leurs clusters examinent chacun avant toute prise de contact.",
        "de": "Die Suche hat diese Kandidaten in anderen Clustern gefunden. Wählen Sie 1 bis 5 "
        "aus; deren Cluster prüfen jeden, bevor jemand kontaktiert wird.",
        "pl": "Wyszukiwanie znalazło tych kandydatów w innych klastrach. Prosimy wybrać od 1 do "
        "5; ich klastry ocenią każdego z nich przed nawiązaniem kontaktu.",
    },
    "lead.host_review": {
        "en": "{requester} ({cluster}) would like to be introduced to {subject}, a member of "
        "your cluster. Endorse the introduction, or veto it with a note.",
        "fr": "{requester} ({cluster}) souhaite être mis en relation avec {subject}, membre de "
        "votre cluster. Approuvez la mise en relation ou opposez-vous-y avec une note.",
        "de": "{requester} ({cluster}) möchte mit {subject}, einem Mitglied Ihres Clusters, in "
        "Kontakt kommen. Befürworten Sie die Kontaktaufnahme oder legen Sie ein Veto ein.",
        "pl": "{requester} ({cluster}) chce nawiązać kontakt z organizacją {subject}, członkiem "
        "Państwa klastra. Można poprzeć nawiązanie kontaktu albo zgłosić sprzeciw z uwagą.",
    },
    "lead.slots": {
        "en": "Pick one of the proposed slots to confirm the meeting, or propose others.",
        "fr": "Choisissez l'un des créneaux proposés pour confirmer le rendez-vous, "
        "ou proposez-en d'autres.",
        "de": "Wählen Sie einen der vorgeschlagenen Termine, um das Treffen zu bestätigen, "
        "oder schlagen Sie andere vor.",
        "pl": "Prosimy wybrać jeden z proponowanych terminów, aby potwierdzić spotkanie, "
        "albo zaproponować inne.",
    },
    "lead.survey": {
        "en": "A few answers help the clusters show what the programme achieves.",
        "fr": "Quelques réponses aident les clusters à montrer ce que le programme apporte.",
        "de": "Ein paar Antworten helfen den Clustern zu zeigen, was das Programm bewirkt.",
        "pl": "Kilka odpowiedzi pomoże klastrom pokazać, co daje program.",
    },
    "lead.outcome": {
        "en": "Some months have passed since your meeting. Tell us where things stand.",
        "fr": "Quelques mois ont passé depuis votre rendez-vous. Dites-nous où vous en êtes.",
        "de": "Seit Ihrem Treffen sind einige Monate vergangen. Sagen Sie uns, wie es steht.",
        "pl": "Od spotkania minęło kilka miesięcy. Prosimy powiedzieć, na jakim etapie "
        "jest współpraca.",
    },
    "lead.view": {
        "en": "This link only shows where the exchange stands: there is nothing to decide here.",
        "fr": "Ce lien montre seulement où en est l'échange : il n'y a rien à décider ici.",
        "de": "Dieser Link zeigt nur den Stand des Austauschs: Hier ist nichts zu entscheiden.",
        "pl": "Ten link pokazuje tylko stan wymiany: nie ma tu nic do zdecydowania.",
    },
    # Forms.
    "accept": {
        "en": "Accept the introduction",
        "fr": "Accepter la mise en relation",
        "de": "Kontaktaufnahme annehmen",
        "pl": "Przyjmij propozycję kontaktu",
    },
    "decline": {"en": "Decline", "fr": "Décliner", "de": "Ablehnen", "pl": "Odrzuć"},
    "decline_heading": {
        "en": "Not interested?",
        "fr": "Pas intéressé ?",
        "de": "Kein Interesse?",
        "pl": "Nie są Państwo zainteresowani?",
    },
    "reason_optional": {
        "en": "Reason (optional, shared with the requester's cluster)",
        "fr": "Motif (facultatif, transmis au cluster du demandeur)",
        "de": "Grund (freiwillig, wird dem Cluster der anfragenden Seite mitgeteilt)",
        "pl": "Powód (opcjonalnie, przekazywany klastrowi zgłaszającego)",
    },
    "approve": {"en": "Approve", "fr": "Approuver", "de": "Genehmigen", "pl": "Zatwierdź"},
    "reject": {"en": "Reject", "fr": "Refuser", "de": "Ablehnen", "pl": "Odrzuć"},
    "request_changes": {
        "en": "Ask for changes",
        "fr": "Demander des modifications",
        "de": "Um Änderungen bitten",
        "pl": "Poproś o zmiany",
    },
    "reject_reason": {
        "en": "Why the request is rejected",
        "fr": "Pourquoi la demande est refusée",
        "de": "Warum die Anfrage abgelehnt wird",
        "pl": "Dlaczego zgłoszenie jest odrzucane",
    },
    "changes_note": {
        "en": "What should change",
        "fr": "Ce qui doit changer",
        "de": "Was geändert werden soll",
        "pl": "Co należy zmienić",
    },
    "amend_title": {"en": "Title", "fr": "Titre", "de": "Titel", "pl": "Tytuł"},
    "amend_description": {
        "en": "Description",
        "fr": "Description",
        "de": "Beschreibung",
        "pl": "Opis",
    },
    "amend_note": {
        "en": "Note to the broker (optional)",
        "fr": "Note pour le chargé d'affaires (facultatif)",
        "de": "Notiz an Ihren Cluster (freiwillig)",
        "pl": "Uwaga dla opiekuna (opcjonalnie)",
    },
    "amend": {
        "en": "Send the amended request",
        "fr": "Envoyer la demande modifiée",
        "de": "Überarbeitete Anfrage senden",
        "pl": "Wyślij poprawione zgłoszenie",
    },
    "candidates": {"en": "Candidates", "fr": "Candidats", "de": "Kandidaten", "pl": "Kandydaci"},
    "matched_because": {
        "en": "Why it matched",
        "fr": "Pourquoi il correspond",
        "de": "Warum er passt",
        "pl": "Dlaczego pasuje",
    },
    "shortlist": {
        "en": "Send the shortlist",
        "fr": "Envoyer la sélection",
        "de": "Auswahl senden",
        "pl": "Wyślij wybór",
    },
    "no_candidates": {
        "en": "No candidates are waiting for a decision.",
        "fr": "Aucun candidat n'attend de décision.",
        "de": "Keine Kandidaten warten auf eine Entscheidung.",
        "pl": "Żaden kandydat nie czeka na decyzję.",
    },
    "endorse": {
        "en": "Endorse the introduction",
        "fr": "Approuver la mise en relation",
        "de": "Kontaktaufnahme befürworten",
        "pl": "Popieram nawiązanie kontaktu",
    },
    "veto": {"en": "Veto", "fr": "S'opposer", "de": "Veto einlegen", "pl": "Zgłoś sprzeciw"},
    "note_optional": {
        "en": "Note (optional)",
        "fr": "Note (facultatif)",
        "de": "Notiz (freiwillig)",
        "pl": "Uwaga (opcjonalnie)",
    },
    "veto_note": {
        "en": "Why you veto it",
        "fr": "Pourquoi vous vous y opposez",
        "de": "Warum Sie ein Veto einlegen",
        "pl": "Powód sprzeciwu",
    },
    "proposed_slots": {
        "en": "Proposed slots",
        "fr": "Créneaux proposés",
        "de": "Vorgeschlagene Termine",
        "pl": "Proponowane terminy",
    },
    "proposed_by.requester": {
        "en": "Proposed by the requester, in the time zone {zone}.",
        "fr": "Proposés par le demandeur, dans le fuseau horaire {zone}.",
        "de": "Von der anfragenden Seite vorgeschlagen, in der Zeitzone {zone}.",
        "pl": "Zaproponowane przez zgłaszającego, w strefie czasowej {zone}.",
    },
    "proposed_by.partner": {
        "en": "Proposed by the partner, in the time zone {zone}.",
        "fr": "Proposés par le partenaire, dans le fuseau horaire {zone}.",
        "de": "Vom Partner vorgeschlagen, in der Zeitzone {zone}.",
        "pl": "Zaproponowane przez partnera, w strefie czasowej {zone}.",
    },
    "your_time": {
        "en": "Your time",
        "fr": "Votre heure",
        "de": "Ihre Zeit",
        "pl": "Państwa czas",
    },
    "their_time": {
        "en": "Proposer's time",
        "fr": "Heure de l'auteur de la proposition",
        "de": "Zeit der vorschlagenden Seite",
        "pl": "Czas proponującego",
    },
    "same_zone": {
        "en": "(the same time zone as yours)",
        "fr": "(le même fuseau horaire que le vôtre)",
        "de": "(dieselbe Zeitzone wie Ihre)",
        "pl": "(ta sama strefa czasowa co Państwa)",
    },
    "pick_slot": {
        "en": "Confirm the chosen slot",
        "fr": "Confirmer le créneau choisi",
        "de": "Gewählten Termin bestätigen",
        "pl": "Potwierdź wybrany termin",
    },
    "no_slots": {
        "en": "No slots are open for choosing at the moment.",
        "fr": "Aucun créneau n'est à choisir pour le moment.",
        "de": "Derzeit stehen keine Termine zur Wahl.",
        "pl": "Obecnie nie ma terminów do wyboru.",
    },
    "counter_heading": {
        "en": "None of these suits you?",
        "fr": "Aucun ne vous convient ?",
        "de": "Keiner passt Ihnen?",
        "pl": "Żaden termin nie pasuje?",
    },
    "counter_hint": {
        "en": "Propose up to {count} other slots; leave the rows you do not need empty.",
        "fr": "Proposez jusqu'à {count} autres créneaux ; laissez vides les lignes inutiles.",
        "de": "Schlagen Sie bis zu {count} andere Termine vor; lassen Sie nicht benötigte "
        "Zeilen leer.",
        "pl": "Można zaproponować do {count} innych terminów; niepotrzebne wiersze prosimy "
        "zostawić puste.",
    },
    "slot_n": {"en": "Slot {n}", "fr": "Créneau {n}", "de": "Termin {n}", "pl": "Termin {n}"},
    "start": {"en": "Start", "fr": "Début", "de": "Beginn", "pl": "Początek"},
    "duration": {"en": "Duration", "fr": "Durée", "de": "Dauer", "pl": "Czas trwania"},
    "timezone": {
        "en": "Time zone",
        "fr": "Fuseau horaire",
        "de": "Zeitzone",
        "pl": "Strefa czasowa",
    },
    "mode": {"en": "Format", "fr": "Format", "de": "Format", "pl": "Forma"},
    "location": {
        "en": "Place or video link (optional)",
        "fr": "Lieu ou lien de visioconférence (facultatif)",
        "de": "Ort oder Videolink (freiwillig)",
        "pl": "Miejsce lub link do wideokonferencji (opcjonalnie)",
    },
    "propose_slots": {
        "en": "Propose these slots",
        "fr": "Proposer ces créneaux",
        "de": "Diese Termine vorschlagen",
        "pl": "Zaproponuj te terminy",
    },
    "survey_question": {
        "en": "What came of the meeting?",
        "fr": "Qu'est-il ressorti du rendez-vous ?",
        "de": "Was hat das Treffen ergeben?",
        "pl": "Co wyniknęło ze spotkania?",
    },
    "satisfaction": {
        "en": "How satisfied are you with the exchange? (1 = not at all, 5 = very)",
        "fr": "Êtes-vous satisfait de l'échange ? (1 = pas du tout, 5 = très)",
        "de": "Wie zufrieden sind Sie mit dem Austausch? (1 = gar nicht, 5 = sehr)",
        "pl": "Jak oceniają Państwo wymianę? (1 = bardzo źle, 5 = bardzo dobrze)",
    },
    "recommend": {
        "en": "Would you recommend the programme to a colleague? (0 = never, 10 = certainly)",
        "fr": "Recommanderiez-vous le programme à un collègue ? (0 = jamais, 10 = certainement)",
        "de": "Würden Sie das Programm weiterempfehlen? (0 = nie, 10 = sicher)",
        "pl": "Czy polecą Państwo program innym? (0 = nigdy, 10 = na pewno)",
    },
    "no_answer": {
        "en": "No answer",
        "fr": "Sans réponse",
        "de": "Keine Angabe",
        "pl": "Bez odpowiedzi",
    },
    "comment": {
        "en": "Comment (optional)",
        "fr": "Commentaire (facultatif)",
        "de": "Kommentar (freiwillig)",
        "pl": "Komentarz (opcjonalnie)",
    },
    "survey": {
        "en": "Send my answers",
        "fr": "Envoyer mes réponses",
        "de": "Antworten senden",
        "pl": "Wyślij odpowiedzi",
    },
    "outcome_question": {
        "en": "Where do things stand with your partner?",
        "fr": "Où en êtes-vous avec votre partenaire ?",
        "de": "Wie steht es mit Ihrem Partner?",
        "pl": "Na jakim etapie jest współpraca z partnerem?",
    },
    "agreement_type": {
        "en": "Type of agreement (if one was reached)",
        "fr": "Type d'accord (si un accord a été conclu)",
        "de": "Art der Vereinbarung (falls eine geschlossen wurde)",
        "pl": "Rodzaj umowy (jeśli została zawarta)",
    },
    "outcome_submit": {
        "en": "Send my answer",
        "fr": "Envoyer ma réponse",
        "de": "Antwort senden",
        "pl": "Wyślij odpowiedź",
    },
    # Labels of values.
    "survey.did_not_take_place": {
        "en": "The meeting did not take place",
        "fr": "Le rendez-vous n'a pas eu lieu",
        "de": "Das Treffen hat nicht stattgefunden",
        "pl": "Spotkanie się nie odbyło",
    },
    "survey.insufficient_interest": {
        "en": "Not enough common interest",
        "fr": "Pas assez d'intérêt commun",
        "de": "Zu wenig gemeinsames Interesse",
        "pl": "Za mało wspólnych interesów",
    },
    "survey.informative_no_cooperation": {
        "en": "Informative, but no cooperation in view",
        "fr": "Instructif, mais pas de coopération en vue",
        "de": "Informativ, aber keine Kooperation in Sicht",
        "pl": "Przydatne, ale bez perspektyw współpracy",
    },
    "survey.cooperation_possible": {
        "en": "A cooperation looks possible",
        "fr": "Une coopération semble possible",
        "de": "Eine Kooperation scheint möglich",
        "pl": "Współpraca wydaje się możliwa",
    },
    "wave.no_further_contact": {
        "en": "No further contact",
        "fr": "Plus de contact",
        "de": "Kein weiterer Kontakt",
        "pl": "Brak dalszego kontaktu",
    },
    "wave.valuable_contact": {
        "en": "A valuable contact, nothing concrete yet",
        "fr": "Un contact utile, rien de concret pour l'instant",
        "de": "Ein wertvoller Kontakt, noch nichts Konkretes",
        "pl": "Cenny kontakt, na razie bez konkretów",
    },
    "wave.negotiation_started": {
        "en": "Negotiations have started",
        "fr": "Des négociations ont commencé",
        "de": "Verhandlungen haben begonnen",
        "pl": "Rozpoczęto negocjacje",
    },
    "wave.agreement_reached": {
        "en": "An agreement was reached",
        "fr": "Un accord a été conclu",
        "de": "Eine Vereinbarung wurde geschlossen",
        "pl": "Zawarto umowę",
    },
    "stage.vetting": {
        "en": "Vetting by the cluster",
        "fr": "Examen par le cluster",
        "de": "Prüfung durch den Cluster",
        "pl": "Ocena przez klaster",
    },
    "stage.changes_requested": {
        "en": "Changes requested",
        "fr": "Modifications demandées",
        "de": "Änderungen erbeten",
        "pl": "Poproszono o zmiany",
    },
    "stage.matching": {
        "en": "Looking for partners",
        "fr": "Recherche de partenaires",
        "de": "Partnersuche",
        "pl": "Szukanie partnerów",
    },
    "stage.host_review": {
        "en": "Review by the partners' clusters",
        "fr": "Examen par les clusters des partenaires",
        "de": "Prüfung durch die Cluster der Partner",
        "pl": "Ocena przez klastry partnerów",
    },
    "stage.introduction": {
        "en": "Introduction",
        "fr": "Mise en relation",
        "de": "Kontaktaufnahme",
        "pl": "Nawiązywanie kontaktu",
    },
    "stage.scheduling": {
        "en": "Scheduling the meeting",
        "fr": "Planification du rendez-vous",
        "de": "Terminfindung",
        "pl": "Ustalanie terminu spotkania",
    },
    "stage.meeting_scheduled": {
        "en": "Meeting scheduled",
        "fr": "Rendez-vous fixé",
        "de": "Treffen vereinbart",
        "pl": "Spotkanie zaplanowane",
    },
    "stage.follow_up": {
        "en": "Follow-up",
        "fr": "Suivi",
        "de": "Nachbereitung",
        "pl": "Podsumowanie",
    },
    "stage.closed": {"en": "Closed", "fr": "Clôturé", "de": "Abgeschlossen", "pl": "Zamknięta"},
    "closed.completed": {
        "en": "Completed",
        "fr": "Mené à bien",
        "de": "Erfolgreich abgeschlossen",
        "pl": "Zakończona",
    },
    "closed.rejected": {
        "en": "Rejected",
        "fr": "Refusé",
        "de": "Abgelehnt",
        "pl": "Odrzucona",
    },
    "closed.withdrawn": {
        "en": "Withdrawn",
        "fr": "Retiré",
        "de": "Zurückgezogen",
        "pl": "Wycofana",
    },
    "closed.cancelled": {
        "en": "Cancelled",
        "fr": "Annulé",
        "de": "Abgebrochen",
        "pl": "Anulowana",
    },
    "closed.no_partner": {
        "en": "No partner found",
        "fr": "Aucun partenaire trouvé",
        "de": "Kein Partner gefunden",
        "pl": "Nie znaleziono partnera",
    },
    "closed.expired": {
        "en": "Expired",
        "fr": "Expiré",
        "de": "Abgelaufen",
        "pl": "Wygasła",
    },
    # After a decision.
    "done_title": {"en": "Thank you", "fr": "Merci", "de": "Vielen Dank", "pl": "Dziękujemy"},
    "done.accept": {
        "en": "You accepted the introduction. Both sides will receive each other's contact "
        "details by e-mail.",
        "fr": "Vous avez accepté la mise en relation. Chacun recevra les coordonnées de l'autre "
        "par e-mail.",
        "de": "Sie haben die Kontaktaufnahme angenommen. Beide Seiten erhalten die Kontaktdaten "
        "der anderen per E-Mail.",
        "pl": "Propozycja kontaktu została przyjęta. Obie strony otrzymają e-mailem swoje dane "
        "kontaktowe.",
    },
    "done.decline": {
        "en": "You declined the introduction. Nobody will contact you about this request.",
        "fr": "Vous avez décliné la mise en relation. Personne ne vous contactera à ce sujet.",
        "de": "Sie haben abgelehnt. Zu dieser Anfrage wird Sie niemand kontaktieren.",
        "pl": "Propozycja została odrzucona. Nikt nie będzie się z Państwem kontaktował w tej "
        "sprawie.",
    },
    "done.approve": {
        "en": "You approved the request: the search for partners starts now.",
        "fr": "Vous avez approuvé la demande : la recherche de partenaires commence.",
        "de": "Sie haben die Anfrage genehmigt: Die Partnersuche beginnt jetzt.",
        "pl": "Zgłoszenie zostało zatwierdzone: rozpoczyna się szukanie partnerów.",
    },
    "done.reject": {
        "en": "You rejected the request. The requester is told why.",
        "fr": "Vous avez refusé la demande. Le demandeur en est informé avec le motif.",
        "de": "Sie haben die Anfrage abgelehnt. Die anfragende Seite erfährt den Grund.",
        "pl": "Zgłoszenie zostało odrzucone. Zgłaszający otrzyma informację z powodem.",
    },
    "done.request_changes": {
        "en": "You asked for changes. The requester will amend the request.",
        "fr": "Vous avez demandé des modifications. Le demandeur va modifier sa demande.",
        "de": "Sie haben um Änderungen gebeten. Die anfragende Seite überarbeitet die Anfrage.",
        "pl": "Poproszono o zmiany. Zgłaszający poprawi zgłoszenie.",
    },
    "done.amend": {
        "en": "Your amended request went back to your cluster for vetting.",
        "fr": "Votre demande modifiée est repartie en examen auprès de votre cluster.",
        "de": "Ihre überarbeitete Anfrage ist zur Prüfung an Ihren Cluster zurückgegangen.",
        "pl": "Poprawione zgłoszenie wróciło do oceny przez Państwa klaster.",
    },
    "done.shortlist": {
        "en": "The shortlist is set. The candidates' clusters review it next.",
        "fr": "La sélection est faite. Les clusters des candidats l'examinent maintenant.",
        "de": "Die Auswahl steht. Als Nächstes prüfen die Cluster der Kandidaten.",
        "pl": "Wybór został zapisany. Teraz ocenią go klastry kandydatów.",
    },
    "done.endorse": {
        "en": "You endorsed the introduction.",
        "fr": "Vous avez approuvé la mise en relation.",
        "de": "Sie haben die Kontaktaufnahme befürwortet.",
        "pl": "Poparli Państwo nawiązanie kontaktu.",
    },
    "done.veto": {
        "en": "You vetoed the introduction: this organisation will not be contacted.",
        "fr": "Vous vous êtes opposé à la mise en relation : cette organisation ne sera pas "
        "contactée.",
        "de": "Sie haben ein Veto eingelegt: Diese Organisation wird nicht kontaktiert.",
        "pl": "Zgłosili Państwo sprzeciw: ta organizacja nie zostanie poproszona o kontakt.",
    },
    "done.pick_slot": {
        "en": "The meeting is confirmed. An invitation is on its way to both sides.",
        "fr": "Le rendez-vous est confirmé. Une invitation part vers les deux parties.",
        "de": "Das Treffen ist bestätigt. Beide Seiten erhalten eine Einladung.",
        "pl": "Spotkanie zostało potwierdzone. Obie strony otrzymają zaproszenie.",
    },
    "done.propose_slots": {
        "en": "Your slots were sent to the other side, who will pick one.",
        "fr": "Vos créneaux ont été envoyés à l'autre partie, qui en choisira un.",
        "de": "Ihre Termine wurden an die andere Seite geschickt, die einen davon wählt.",
        "pl": "Terminy zostały wysłane drugiej stronie, która wybierze jeden z nich.",
    },
    "done.survey": {
        "en": "Your answers are recorded.",
        "fr": "Vos réponses sont enregistrées.",
        "de": "Ihre Antworten wurden gespeichert.",
        "pl": "Odpowiedzi zostały zapisane.",
    },
    "done.outcome": {
        "en": "Your answer is recorded.",
        "fr": "Votre réponse est enregistrée.",
        "de": "Ihre Antwort wurde gespeichert.",
        "pl": "Odpowiedź została zapisana.",
    },
    "close_page": {
        "en": "You can close this page.",
        "fr": "Vous pouvez fermer cette page.",
        "de": "Sie können diese Seite schließen.",
        "pl": "Można zamknąć tę stronę.",
    },
    # When a link cannot be used, or a decision is refused.
    "error.link_used": {
        "en": "This link has already been used",
        "fr": "Ce lien a déjà été utilisé",
        "de": "Dieser Link wurde bereits verwendet",
        "pl": "Ten link został już użyty",
    },
    "error.link_used.text": {
        "en": "Each link works once, and this one has done its job. To change your answer, "
        "reply to the e-mail: your cluster will help.",
        "fr": "Chaque lien ne fonctionne qu'une fois, et celui-ci a déjà servi. Pour modifier "
        "votre réponse, répondez à l'e-mail : votre cluster vous aidera.",
        "de": "Jeder Link funktioniert nur einmal, und dieser wurde schon verwendet. Um Ihre "
        "Antwort zu ändern, antworten Sie auf die E-Mail: Ihr Cluster hilft Ihnen.",
        "pl": "Każdy link działa tylko raz, a ten został już wykorzystany. Aby zmienić "
        "odpowiedź, prosimy odpowiedzieć na e-mail: Państwa klaster pomoże.",
    },
    "error.link_revoked": {
        "en": "This link no longer works",
        "fr": "Ce lien ne fonctionne plus",
        "de": "Dieser Link funktioniert nicht mehr",
        "pl": "Ten link już nie działa",
    },
    "error.link_revoked.text": {
        "en": "The step it was for is over: the exchange has moved on or has been closed.",
        "fr": "L'étape à laquelle il servait est terminée : l'échange a avancé ou a été clôturé.",
        "de": "Der Schritt, für den er gedacht war, ist vorbei: Der Austausch ist "
        "weitergegangen oder wurde beendet.",
        "pl": "Etap, którego dotyczył, już się zakończył: wymiana przeszła dalej lub została "
        "zamknięta.",
    },
    "error.link_expired": {
        "en": "This link has expired",
        "fr": "Ce lien a expiré",
        "de": "Dieser Link ist abgelaufen",
        "pl": "Ten link wygasł",
    },
    "error.link_expired.text": {
        "en": "It was valid for a limited time. If you still want to answer, reply to the "
        "e-mail: your cluster will help.",
        "fr": "Il était valable pour une durée limitée. Si vous souhaitez encore répondre, "
        "répondez à l'e-mail : votre cluster vous aidera.",
        "de": "Er war nur begrenzt gültig. Wenn Sie noch antworten möchten, antworten Sie auf "
        "die E-Mail: Ihr Cluster hilft Ihnen.",
        "pl": "Był ważny przez ograniczony czas. Jeśli nadal chcą Państwo odpowiedzieć, prosimy "
        "odpowiedzieć na e-mail: Państwa klaster pomoże.",
    },
    "error.not_found": {
        "en": "This link is unknown",
        "fr": "Ce lien est inconnu",
        "de": "Dieser Link ist unbekannt",
        "pl": "Ten link jest nieznany",
    },
    "error.not_found.text": {
        "en": "Check that you opened the whole address from the e-mail.",
        "fr": "Vérifiez que vous avez ouvert l'adresse complète figurant dans l'e-mail.",
        "de": "Prüfen Sie, ob Sie die vollständige Adresse aus der E-Mail geöffnet haben.",
        "pl": "Prosimy sprawdzić, czy otwarto pełny adres z wiadomości e-mail.",
    },
    "error.csrf_failed": {
        "en": "This form could not be accepted",
        "fr": "Ce formulaire n'a pas pu être accepté",
        "de": "Dieses Formular konnte nicht angenommen werden",
        "pl": "Nie można przyjąć tego formularza",
    },
    "error.csrf_failed.text": {
        "en": "For your security, a form is only accepted from the page that showed it. Open "
        "the link from your e-mail again and send the form once more. Nothing was recorded.",
        "fr": "Pour votre sécurité, un formulaire n'est accepté que depuis la page qui l'a "
        "affiché. Rouvrez le lien de votre e-mail et renvoyez le formulaire. Rien n'a été "
        "enregistré.",
        "de": "Zu Ihrer Sicherheit wird ein Formular nur von der Seite angenommen, die es "
        "angezeigt hat. Öffnen Sie den Link aus Ihrer E-Mail erneut und senden Sie das "
        "Formular noch einmal. Es wurde nichts gespeichert.",
        "pl": "Ze względów bezpieczeństwa formularz jest przyjmowany tylko ze strony, która go "
        "wyświetliła. Prosimy ponownie otworzyć link z e-maila i wysłać formularz jeszcze raz. "
        "Nic nie zostało zapisane.",
    },
    "error.conflict": {
        "en": "This step is no longer open",
        "fr": "Cette étape n'est plus ouverte",
        "de": "Dieser Schritt ist nicht mehr offen",
        "pl": "Ten etap nie jest już otwarty",
    },
    "error.conflict.text": {
        "en": "The exchange has moved on, so this answer could not be taken. Nothing was recorded.",
        "fr": "L'échange a avancé, cette réponse n'a donc pas pu être prise en compte. Rien n'a "
        "été enregistré.",
        "de": "Der Austausch ist weitergegangen, daher konnte diese Antwort nicht angenommen "
        "werden. Es wurde nichts gespeichert.",
        "pl": "Wymiana przeszła dalej, więc tej odpowiedzi nie można było przyjąć. Nic nie "
        "zostało zapisane.",
    },
    "error.forbidden": {
        "en": "This link does not allow that",
        "fr": "Ce lien ne le permet pas",
        "de": "Dieser Link erlaubt das nicht",
        "pl": "Ten link na to nie pozwala",
    },
    "error.forbidden.text": {
        "en": "The answer was not taken. Nothing was recorded.",
        "fr": "La réponse n'a pas été prise en compte. Rien n'a été enregistré.",
        "de": "Die Antwort wurde nicht angenommen. Es wurde nichts gespeichert.",
        "pl": "Odpowiedź nie została przyjęta. Nic nie zostało zapisane.",
    },
    "error.invalid": {
        "en": "Please check what you entered",
        "fr": "Veuillez vérifier votre saisie",
        "de": "Bitte prüfen Sie Ihre Eingaben",
        "pl": "Prosimy sprawdzić wprowadzone dane",
    },
    "error.invalid.text": {
        "en": "Nothing was sent yet. Correct the field below and send the form again.",
        "fr": "Rien n'a encore été envoyé. Corrigez le champ ci-dessous et renvoyez le formulaire.",
        "de": "Es wurde noch nichts gesendet. Korrigieren Sie das Feld unten und senden Sie "
        "das Formular erneut.",
        "pl": "Nic jeszcze nie wysłano. Prosimy poprawić pole poniżej i wysłać formularz ponownie.",
    },
    "error.unavailable": {
        "en": "The service is busy",
        "fr": "Le service est occupé",
        "de": "Der Dienst ist ausgelastet",
        "pl": "Usługa jest zajęta",
    },
    "error.unavailable.text": {
        "en": "Nothing was recorded. Please try again in a minute.",
        "fr": "Rien n'a été enregistré. Veuillez réessayer dans une minute.",
        "de": "Es wurde nichts gespeichert. Bitte versuchen Sie es in einer Minute erneut.",
        "pl": "Nic nie zostało zapisane. Prosimy spróbować ponownie za minutę.",
    },
    "error.other": {
        "en": "Something went wrong",
        "fr": "Un problème est survenu",
        "de": "Etwas ist schiefgelaufen",
        "pl": "Coś poszło nie tak",
    },
    "error.other.text": {
        "en": "Nothing was recorded. Please try again later.",
        "fr": "Rien n'a été enregistré. Veuillez réessayer plus tard.",
        "de": "Es wurde nichts gespeichert. Bitte versuchen Sie es später erneut.",
        "pl": "Nic nie zostało zapisane. Prosimy spróbować później.",
    },
    "details": {"en": "Details", "fr": "Détails", "de": "Details", "pl": "Szczegóły"},
    "field": {"en": "Field", "fr": "Champ", "de": "Feld", "pl": "Pole"},
}

# Labels of form fields, for the messages that name one.
FIELD_TEXTS: Final = {
    "reason": "reason_optional",
    "note": "note_optional",
    "start": "start",
    "slots": "proposed_slots",
    "timezone": "timezone",
    "outcome": "outcome",
    "satisfaction": "satisfaction",
    "recommend": "recommend",
    "comment": "comment",
    "agreement_type": "agreement_type",
    "organisation_ids": "candidates",
    "title": "amend_title",
    "description": "amend_description",
    "location": "location",
    "mode": "mode",
}


def _french_typography(value: str) -> str:
    # French sets a no-break space before two-part punctuation and uses the typographic
    # apostrophe, as the e-mails do; ruff refuses both characters in source, so they are
    # put in here.
    for mark in (":", ";", "?", "!"):
        value = value.replace(f" {mark}", f"\N{NO-BREAK SPACE}{mark}")
    return value.replace("'", "\N{RIGHT SINGLE QUOTATION MARK}")


TEXTS: Final[dict[str, dict[str, str]]] = {
    key: {**values, "fr": _french_typography(values["fr"])} for key, values in _TEXTS.items()
}


def text(language: str, key: str, **values: object) -> str:
    template = TEXTS[key].get(language) or TEXTS[key][DEFAULT_LANGUAGE]
    return template.format(**values) if values else template


def choose_language(stored: str | None, accept_language: str | None) -> str:
    """The link's language when it has one, else the browser's best supported choice."""
    if stored is not None and stored in LANGUAGES:
        return stored
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate((accept_language or "").split(",")):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        primary = tag.split("-")[0].strip().lower()
        if primary in LANGUAGES and quality > 0:
            ranked.append((-quality, position, primary))
    return min(ranked)[2] if ranked else DEFAULT_LANGUAGE
