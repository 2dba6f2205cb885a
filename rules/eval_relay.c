/* eval_relay.c - the Received chain as SpamAssassin reads it
 * (Mail::SpamAssassin::Message::Metadata::Received), the trust path
 * (trusted_networks, internal_networks, msa_networks or SpamAssassin's
 * inference), the pseudo-headers X-Spam-Relays-* and ALL-TRUSTED... and
 * the eval: functions over them (RelayEval, the Received parts of
 * HeaderEval, VBounce, check_mailfrom_matches_rcvd).
 *
 * Each Received field is unfolded, bounded (RCVD_MAX_LINE) and matched
 * against SpamAssassin's known formats, most specific first; a field
 * giving an address and a receiving host is a relay.  At most MAX_RELAYS
 * fields are read per message.  No recursion, no I/O. */
#include <arpa/inet.h>
#include <ctype.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include "rules/eval.h"
#include "rules/eval_relay.h"

#define RCVD_MAX_LINE 2048      /* longer Received fields are cut: formats fit well within */
#define MAX_RELAYS    64        /* Received fields read per message */
#define MAX_NETS      4096      /* entries of trusted_networks etc. */
#define MAX_BOUNCE    1024      /* welcomelist_bounce_relays patterns */
#define MAX_SCAN_BODY (1u << 20) /* bytes of body check_welcomelist_bounce_relays reads */
#define MAX_JOINED    (256u << 10) /* fields joined for ALL-* and the Received texts: enough
                                    * for any real header section, bounded for hostile ones */

/* --- regular expressions ------------------------------------------------------
 * SpamAssassin's formats are regular expressions; they are written here as
 * PCRE2 patterns where %IP% is an IPv4/IPv6 address and %LH% a way of
 * saying localhost.  Compiled once per process. */

#define OCT "(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)"
#define IP4 "(?:" OCT "\\." OCT "\\." OCT "\\." OCT ")"
#define HX  "[A-Fa-f0-9]"
#define IPRE "(?:\\b(?<!:)" IP4 "\\b|(?:IPv6:|(?<![A-Fa-f0-9:]))(?:(?:" HX "{1,4}:){7}" HX "{1,4}|(?:" HX "{1,4}:){6}" IP4 \
	"|(?=[A-Fa-f0-9:.]*::)(?:" HX "{0,4}:){2,7}(?:" IP4 "|" HX "{1,4})?)(?![A-Fa-f0-9:]))"
#define LHRE "(?:(?i:localhost(?:\\.localdomain)?)|\\b(?<!:)127\\.0\\.0\\.1\\b|(?:IPv6:)?(?:0{0,4}:){2,7}0{0,3}1(?![A-Fa-f0-9:])" \
	"|(?:IPv6:)?(?i:(?:0{0,4}:){2,6}ffff:)127\\.0\\.0\\.1\\b)"

#define RX_LIST \
	X(DATE_TAIL, "[\\s;]+(?:(?:Mon|T(?:ue|hu)|Wed|Fri|S(?:at|un)), )?\\d+ (?:J(?:an|u[nl])|Feb|Ma[ry]|A(?:pr|ug)|Sep|Oct|Nov|Dec) \\d+ \\d+:\\d+(?::\\d+)? \\S+$") \
	X(FROM_BY_SEMI, "^(?i:from) (\\S+) (?i:by) [^\\s;]+ ?;") \
	X(ID, " id <?([^\\s<>;]{3,})") \
	X(HELO_EQ, "\\bhelo=([-A-Za-z0-9.^+_&:=?!@%*$\\\\/]+)(?:[^-A-Za-z0-9.^+_&:=?!@%*$\\\\/]|$)") \
	X(HELO_WORD, "\\b(?:HELO|EHLO) ([-A-Za-z0-9.^+_&:=?!@%*$\\\\/]+)(?:[^-A-Za-z0-9.^+_&:=?!@%*$\\\\/]|$)") \
	X(BY, " by (\\S+)(?:[^-A-Za-z0-9;.]|$)") \
	X(AUTH_RFC3848, "(?i: with ((?:ES|L|UTF8S|UTF8L)MTPS?A|ASMTP|HTTP[SU]?)(?: |;|$))") \
	X(AUTH_GMAIL, " by mx\\.google\\.com with ESMTPS id [a-z0-9]{1,4}sm[0-9]{2,9}[a-z]{3}\\.[0-9]{1,3}\\.[0-9]{4}\\.(?:[0-6][0-9]\\.){4}[0-6][0-9]") \
	X(AUTH_GMAIL_TLS, "\\(version=([^ ]+) cipher=([^)]+)\\)") \
	X(AUTH_COURIER, "^from .*?(?:\\]\\)|\\)\\]) \\(AUTH: (LOGIN|PLAIN|DIGEST-MD5|CRAM-MD5) \\S+(?:, .*?)?\\) by ") \
	X(AUTH_SENDMAIL, "^from .*?(?:\\](?: \\([^)]*\\))?\\)|\\)\\]) .*?\\(.*?authenticated.*?\\).*? by") \
	X(AUTH_GMX, "from \\S* \\((?:HELO|EHLO) (\\S*)\\) \\[(" IPRE ")\\] by (mail\\.gmx\\.(?:net|com)) \\([^)]+\\) with ((?:ESMTP|SMTP))") \
	X(AUTH_CP, "\\) by .+ \\(\\d{1,2}\\.\\d\\.\\d{3}(?:\\.\\d{1,3})?\\) \\(authenticated as .+\\) id ") \
	X(AUTH_POSTFIX, "\\) \\(Authenticated sender: \\S+\\) by \\S+ \\(([^)]+)\\) with ") \
	X(AUTH_CGP, "CommuniGate Pro (HTTP|SMTP|XIMSS|IMAP)") \
	X(AUTH_VIA_HTTP, "(?i: \\(via (HTTP.?)\\)(?: |;|$))") \
	X(ENVFROM, "(?i:(?:return-path:? |envelope-(?:sender|from)[ =])(\\S+)\\b)") \
	X(SQUIRREL, " \\((?:SquirrelMail|NaSMail) authenticated user ") \
	X(SQUIRREL_IP, "(" IPRE ")\\b(?![.-]).{10,80}by (\\S+) with HTTP") \
	X(AOL_WEB, "(" IPRE ") by (\\S+) \\(" IPRE "\\) with HTTP \\(WebMailUI\\)") \
	X(SMTPSVC, "^(\\S*) \\(\\[(" IPRE ")\\][^)]{0,40}\\) by (\\S+) with Microsoft SMTPSVC") \
	X(SMTPSVC_PICKUP, "^mail pickup service by (\\S+) with Microsoft SMTPSVC$") \
	X(MSSMTP_G, " with (?:Microsoft SMTP Server|mapi id) (?:\\([^)]+\\) )?\\d+\\.\\d+\\.\\d+\\.\\d+(?:$| )") \
	X(MSSMTP, "^(\\S+) \\(\\[?(" IPRE ")(?:%[A-Z0-9._~-]*)?\\]?\\) by (\\S+) ") \
	X(XMAIL, "^(\\S+) \\((\\[?" IPRE "\\]?)(?::\\d+)\\) by (\\S+)(?: \\(\\S+\\))? with \\[XMail") \
	X(XMAIL_ID, " id <(\\S+)>") \
	X(XMAIL_FROM, " from <(\\S+)>") \
	X(ECEL1, "^\\(\\[(" IPRE "):\\d+\\] helo=(\\S+)\\) by (\\S+) ") \
	X(ECEL2, "^\\S+ \\(\\[(" IPRE "):\\d+\\]\\) by (\\S+) ") \
	X(EXIM_LOCAL, "\\bwith local(?:-\\S+)? ") \
	X(EXIM1, "^\\[(" IPRE ")\\] \\((.*?)\\) by (\\S+) ") \
	X(EXIM2, "^(\\S+) \\(\\[(" IPRE ")\\](.*?)\\) by (\\S+) ") \
	X(EXIM3, "^(\\S+) \\[(" IPRE ")\\](:\\d+)? by (\\S+) ") \
	X(EXIM4_RDNS, "^(\\S+) ") \
	X(EXIM4_HELO, " \\((\\S+)\\) ") \
	X(EXIM4_IP, " \\[(" IPRE ")(?:\\.\\d+)?\\] ") \
	X(EXIM4_BY, "by (\\S+) ") \
	X(SUB_HELO, "helo=(\\S+)") \
	X(SUB_IDENT, "ident=(\\S*)") \
	X(POSTFIX1, "^(\\S+) \\((\\S+) \\[(" IPRE ")\\]\\) by (\\S+) ") \
	X(POSTFIX2, "^(\\S+) \\((\\S+)\\[(" IPRE ")\\]\\) by (\\S+) ") \
	X(SCALIX, "^(\\S+) \\( ?(" IPRE ")\\) by (\\S+)") \
	X(DOMINO, "^(\\S+) \\(\\[(" IPRE ")\\]\\) by (\\S+) \\(Lotus") \
	X(HTTP_NUM, "^(" IPRE ") \\(\\[" IPRE "\\]\\) by (\\S+)") \
	X(QMAIL_LDAP, " by \\S+ \\(qmail-\\S+\\) with ") \
	X(SENDMAIL1, "^(\\S+) \\((\\S+) \\[(" IPRE ")\\].*\\) by (\\S+) \\(") \
	X(IDENT_PFX1, "^IDENT:([^@]*)@") \
	X(IDENT_PFX2, "^([^@]*)@") \
	X(EXCH55, "^(\\S+) \\((\\S+) \\[(" IPRE ")\\]\\) by (\\S+) with \\S+ \\(") \
	X(HELOEQ_WITH, "^(\\S+) \\(\\[(" IPRE ")\\] helo=(\\S+)\\) by (\\S+) with ") \
	X(ATTBI1, "^(\\S+) \\(<unknown\\S*>\\[(" IPRE ")\\]\\) by (\\S+) ") \
	X(ATTBI2, "^(\\S+) \\((\\S+\\.\\S+)\\[(" IPRE ")\\]\\) by (\\S+) ") \
	X(IDENT_AT, "^(\\S+) \\((\\S*)@\\[(" IPRE ")\\].*\\) by (\\S+) \\(") \
	X(HOTMAIL_BY, "by (\\S+\\.hotmail\\.msn\\.com) ") \
	X(LEAD_IP, "^(" IPRE ") ") \
	X(QPSMTPD, "^(\\S+) \\((?:HELO|EHLO) (\\S*)\\) \\((" IPRE ")\\) by (\\S+) \\(qpsmtpd/\\S+\\) with (?:ESMTP|SMTP)") \
	X(LMTP, "^(\\S+) \\(LHLO (\\S*)\\) \\((" IPRE ")\\) by (\\S+) with LMTP") \
	X(GMX, "^(\\S+) \\((?:HELO|EHLO) (\\S*)\\) \\[(" IPRE ")\\] by (\\S+) \\([^)]+\\) with (?:ESMTP|SMTP)") \
	X(SMTPD_FOR, "^(\\S+) \\(\\[(" IPRE ")\\]\\) by (\\S+) via smtpd \\(for \\S+\\) with SMTP\\(") \
	X(QMAIL_G, "^\\S+( \\((?:HELO|EHLO) \\S*\\))? \\((\\S+@)?\\[?" IPRE "\\]?\\)( \\(envelope-sender <\\S+>\\))? by \\S+( \\(.+\\))* with (.* )?(SMTP|QMQP)(?! id )") \
	X(QMAIL1, "^(\\S+) \\((?:HELO|EHLO) ([^ ()]*)\\) \\((\\S*)@\\[?(" IPRE ")\\]?\\)( \\(envelope-sender <\\S+>\\))? by (\\S+)") \
	X(QMAIL2, "^(\\S+) \\((?:HELO|EHLO) ([^ ()]*)\\) \\(\\[?(" IPRE ")\\]?\\)( \\(envelope-sender <\\S+>\\))? by (\\S+)") \
	X(QMAIL3, "^(\\S+) \\((\\S*)@\\[?(" IPRE ")\\]?\\)( \\(envelope-sender <\\S+>\\))? by (\\S+)") \
	X(QMAIL4, "^(\\S+) \\(\\[?(" IPRE ")\\]?\\)( \\(envelope-sender <\\S+>\\))? by (\\S+)") \
	X(VIA_HTTP, "^\\[(" IPRE ")\\] by (\\S+) via HTTP$") \
	X(SP_BRACKET, "^(\\S+) \\( \\[(" IPRE ")\\]\\).*? by (\\S+) ") \
	X(PAREN_HELO, "^\\((\\S+) \\[(" IPRE ")\\]\\) by (\\S+) ") \
	X(BRACKET_BY, "^\\[(" IPRE ")\\] by (\\S+) ") \
	X(PAREN_IP_BY, "^\\(\\[?(" IPRE ")\\]?\\) by (\\S+) ") \
	X(MDAEMON1, "^(\\S+) \\[(" IPRE ")\\] by (\\S+) \\[" IPRE "\\] with ") \
	X(MDAEMON2, "^(\\S+) \\[\\((" IPRE ")\\)\\] by (\\S+) \\(" IPRE "\\) ") \
	X(SENDMAIL2, "^(\\S+) \\(\\[(" IPRE ")\\]\\) by (\\S+) \\(") \
	X(SENDMAIL3, "^(\\S+) \\((\\S+) \\[(" IPRE ")\\]\\).*? by (\\S+)\\b") \
	X(SENDMAIL4, "^(\\S+) \\(\\[(" IPRE ")(?:[.:]\\d+)?\\]\\).*? by (\\S+) ") \
	X(SENDMAIL5, "^(\\S+) \\((\\S+) \\[(" IPRE ")\\]\\)(?: \\(authenticated bits=\\d+\\))? by (\\S+) \\(") \
	X(FETCHER, "with (?:POP3|IMAP)") \
	X(QMAILISH1, "^(\\S+) \\((?:HELO|EHLO) ([^)]*)\\) \\((\\S*@)?\\[?(" IPRE ")\\]?\\).* by (\\S+) ") \
	X(QMAILISH2, "^(\\S+) \\((\\S*@)?\\[?(" IPRE ")\\]?\\).* by (\\S+) ") \
	X(HTTP_FOR, "^\\[(" IPRE ")\\] by (\\S+) with http for ") \
	X(SMAP1, "^(\\S+)\\((" IPRE ")\\) by (\\S+) via smap ") \
	X(SMAP2, "^(\\S+)\\((" IPRE "), (?:HELO|EHLO) (\\S*)\\) by (\\S+) via smap ") \
	X(POSTOFFICE, "^\\[(" IPRE ")\\] by (\\S+) \\(Post") \
	X(ARGOSOFT, "^\\[(" IPRE ")\\] by (\\S+) \\(ArGoSoft") \
	X(INTERSCAN, "^(" IPRE ") by (\\S+) \\((?:SMTPL|InterScan)\\b") \
	X(BSMTP, "^\\S+ by \\S+ with BSMTP") \
	X(SPIKE, "^(\\S+) \\((\\S+) \\[(" IPRE ")\\]\\) by (\\S+) with ") \
	X(YAHOO_PLAIN, "^(\\S+) \\((?:HELO|EHLO) (\\S*)\\) \\((?:(\\S+)@)?(" IPRE ").*?\\) by (\\S+) with ") \
	X(CGP_ACCOUNT, "^\\[(" IPRE ")\\] \\((?:account \\S+ )?(?:HELO|EHLO) (\\S*)\\) by (\\S+) \\(") \
	X(CGP_VERIFIED, "^(\\S+) \\(\\[(" IPRE ")\\] verified\\) by (\\S+) \\(") \
	X(CIPHERTRUST, "^\\(\\[(" IPRE ")\\]\\) by (\\S+) with ") \
	X(IRONPORT, "^([^\\d]\\S+) \\((" IPRE ")\\) by (\\S+) ") \
	X(CONTENTTECH, "^\\S+ \\(\\S+\\) by \\S+ \\(Content Technologies ") \
	X(TWO_BRACKETS, "^(\\S+) \\(\\[(" IPRE ")\\] \\[(\\S+)\\]\\) by (\\S+) with ") \
	X(IP_BY_WITH, "^(" IPRE ") by (\\S+) with ") \
	X(POBOX, "^(\\S+) \\((\\S+)\\[(" IPRE ")\\]\\) by (\\S+) ") \
	X(FSECURE, "^\\[(" IPRE ")\\]\\S+ \\((?:HELO|EHLO) (\\S*)\\) by (\\S+) ") \
	X(ALTAVISTA, "^(" IPRE ") \\((?:HELO|EHLO) (\\S*)\\) by (\\S+) ") \
	X(SMTPD32, "^(\\S+) \\[(" IPRE ")\\] by (\\S+) ") \
	X(CSMAP, "^(\\S+)\\((" IPRE ")\\) by (\\S+) ") \
	X(MAILGATE, "^\\[(" IPRE ")\\] by (\\S+) \\(MailGate ") \
	X(UNVERIFIED, "^(\\S+) \\(unverified \\[(" IPRE ")\\]\\) by (\\S+) ") \
	X(PROXYING, "^(" IPRE ") \\([A-Za-z][^)]+\\) by (\\S+) with ") \
	X(BRACKET_SUB, "^\\[(" IPRE ")\\] \\(([^)]+)\\) by (\\S+) ") \
	X(IDENT_IP_WITH, "^(\\S+) \\((?:\\S+@)?(" IPRE ")\\) by (\\S+) with ") \
	X(OBTUSE, "^(\\S+)\\((" IPRE ")\\)(?:, claiming to be \"(\\S+)\")? via \\S+ by (\\S+),") \
	X(YAHOO_LOGIN, "^(\\S+) \\((\\S+)@(" IPRE ") with login\\) by (\\S+\\.yahoo\\.com) with SMTP") \
	X(XORIG, "^X-Originating-IP: (" IPRE ")$") \
	X(IGN1, "^\\S+ \\([^\\s@]+@" LHRE "\\) by \\S+ \\(") \
	X(IGN2, "^\\S+ \\S+ by \\S+ with local-e?smtp ") \
	X(IGN3, "^127\\.0\\.0\\.1 \\(AVG SMTP \\S+ \\[\\S+\\]\\)") \
	X(IGN4, "^\\S+@\\S+ by \\S+ by uid \\S+ ") \
	X(IGN5, "^\\S+@\\S+ by \\S+ ") \
	X(IGN6, "^Unknown/Local \\(") \
	X(IGN7, "^" LHRE " \\((?:\\S+@)?" LHRE "[)\\[]") \
	X(IGN8, "^\\S+ \\((?:\\S+@)?" LHRE "\\) ") \
	X(IGN9, "^\\S+ \\(\\S+@\\S+ \\[" LHRE "\\]\\) ") \
	X(IGN10, "^\\(AUTH: \\S+\\) by \\S+ with ") \
	X(IGN11, "^localhost \\(localhost \\[\\[UNIX: localhost\\]\\]\\) by ") \
	X(IGN12, "^\\S+\\.amazon\\.com by \\S+\\.amazon\\.com with ESMTP \\(peer crosscheck: ") \
	X(IGN13, "^[^.]+ by \\S+ with Novell_GroupWise") \
	X(IGN14, "^no\\.name\\.available by \\S+ via smtpd \\(for ") \
	X(QMS, "^\\S+ by \\S+ \\(.{0,100}\\) with qmail-scanner") \
	X(IGN15, "^\\S+ by \\S+ with local") \
	X(IGN16, "^\\S+ \\(\\[unix socket\\]\\) by \\S+ \\(Cyrus v[0-9]*?\\.[0-9]*?\\.[0-9]*?\\) with LMTPA") \
	X(IGN17, "^\\S+ by \\S+ (?:with|via|for|\\()") \
	X(IGN18, "^\\S+ (?:(?:with|via|for) \\S+|\\(unverified\\)) by\\b") \
	X(IGN19, "^\\S+ \\(unknown\\) by \\S+ \\(SG\\) with \\b") \
	X(IGN20, "^\\S+ \\(\\S+ \\[local\\]\\) by \\S+ \\(OpenSMTPD\\) with \\b") \
	X(IGN21, "\\(LSMTP for") \
	X(IGN22, "^\\(\\[" LHRE "\\]\\) with MailEnable ") \
	X(IGN23, "^facebook\\.com \\([^)]+\\) by facebook\\.com with Thrift id \\S+$") \
	X(IGN24, "^\\S+ named \\S+ by gmailapi\\.google\\.com with HTTPREST$") \
	X(IGN25, "^\\S+ id \\S+$") \
	X(IGN26, "^\\[<.*? \\(Jetsend") \
	X(GUESS_HELO, "^(\\S+)[^-A-Za-z0-9.]") \
	X(SIMTA, "^(\\S+) \\((\\S+) \\[(" IPRE ")\\]\\) BY (\\S+) (?:\\([^)]+\\) WITH SMTP )?ID <?(\\S+?)>?(?: FOR <[^>]+>)?$") \
	X(NAVGW, "^(\\S*) \\[(" IPRE ")\\]\\) by (\\S+) \\(NAVGW .*?\\) with ") \
	X(PFROM_LOCAL, "^\\S+@localhost\\) by \\S+ ") \
	X(JQUEUE, "^[^\\s@]+@[^)]+\\) by \\S+\\(jqueuemail\\) id [^\\s;]+") \
	X(WITH_LOCAL_FOR, "\\bwith local for\\b") \
	X(WITH_HTTP, "\\bwith HTTP\\b") \
	X(ECELERITY, "\\(ecelerity\\b") \
	X(HTTP_DAV, " with Microsoft Exchange Server HTTP-DAV\\b") \
	X(V4MAPPED, "^(?i:0*:0*:(?:0*:)*ffff:)(\\d+\\.\\d+\\.\\d+\\.\\d+)$") \
	X(FIND_IP, "(" IPRE ")") \
	X(AOL_RLY, "(?i) rly-[a-z][a-z]\\d\\d\\.") \
	X(AOL_OK1, "/AOL-\\d+\\.\\d+\\.\\d+\\)") \
	X(AOL_OK2, "ESMTP id (?:RELAY|MAILRELAY|MAILIN)") \
	X(EZMLM, "(?m)^contact \\S+@\\S+; run by ezmlm$") \
	X(DLTO_ML, "(?m)^mailing list \\S+@\\S+") \
	X(QMAIL_INV, "qmail \\d+ invoked (?:from network|by .{3,20})\\); \\d+ ... \\d+") \
	X(MSN_GROUPS, "from groups\\.msn\\.com \\(\\S+\\.msn\\.com ") \
	X(MSNG_TO, "(?i)<(\\S+)@groups\\.msn\\.com>") \
	X(MSNG_RCVD, "from mail pickup service by ((?:p\\d\\d\\.)groups\\.msn\\.com)\\b") \
	X(HM_PICKUP, "from mail pickup service by hotmail\\.com with Microsoft SMTPSVC;") \
	X(HM_ORIG, "hotmail\\.com|msonline\\-outlook") \
	X(HM1, "from (?:\\S*\\.)?hotmail.com \\(\\S+\\.hotmail(?:\\.msn)?\\.com[ )]") \
	X(HM2, "from \\S*\\.outbound\\.protection\\.outlook\\.com \\(\\S+\\.outbound\\.protection\\.outlook\\.com[ )]") \
	X(HM3, "from \\S*\\.(?:eur|nam)prd\\d+\\.prod\\.outlook\\.com \\(" IPRE "\\)") \
	X(HM4, "from \\S*\\.hotmail.com \\(\\[" IPRE "\\][ ):]") \
	X(HM5, "from \\S+ by \\S+\\.hotmail(?:\\.msn)?\\.com with HTTP;") \
	X(HM6, "from \\[66\\.218.\\S+\\] by \\S+\\.yahoo\\.com") \
	X(HM_HELO, "(?:from |HELO |helo=)\\S*hotmail\\.com\\b") \
	X(FROM_HOTMAIL, "(?i)\\bhotmail\\.com$") \
	X(FROM_EUDORA, "(?i)\\beudoramail\\.com$") \
	X(EUD_BY, "by \\S*whowhere.com;") \
	X(FROM_YAHOO, "(?i)\\byahoo\\.com$") \
	X(YH_TR, " rdns=\\S+\\.yahoo\\.com ") \
	X(YH_UN, "^[^\\]]+ rdns=\\S+\\.yahoo\\.com ") \
	X(YH1, "by web\\S+\\.mail\\S*\\.yahoo\\.com via HTTP") \
	X(YH2, "by sonic\\S+\\.consmr\\.mail\\S*\\.yahoo\\.com with HTTP") \
	X(YH3, "by smtp\\S+\\.yahoo\\.com with SMTP") \
	X(YH4, "from \\[" IPRE "\\] by \\S+\\.(?:groups|scd|dcn)\\.yahoo\\.com with NNFMP") \
	X(YH5, "\\bmailer\\d+\\.bulk\\.scd\\.yahoo\\.com\\b") \
	X(YH5_FROM, "(?i)@reply\\.yahoo\\.com$") \
	X(YH6, "by \\w+\\.\\w+\\.yahoo\\.com \\(\\d+\\.\\d+\\.\\d+/\\d+\\.\\d+\\.\\d+\\)(?: with ESMTP)? id \\w+") \
	X(FROM_JUNO, "(?i)\\bjuno\\.com$") \
	X(JU1, "from.*\\b(?:juno|untd)\\.com.*[\\[(]" IPRE "[\\])].*by") \
	X(JU2, " cookie\\.(?:juno|untd)\\.com ") \
	X(JU3, "from.*\\bmail\\.com.*\\[" IPRE "\\].*by") \
	X(JU4, "\\bmail\\.com") \
	X(JU5, "from (webmail\\S+\\.untd\\.com) \\(\\1 \\[" IPRE "\\]\\) by") \
	X(JU6, "^Webmail Version \\d") \
	X(FROM_GMAIL, "(?i)\\bgmail\\.com$") \
	X(GM1, "by 10\\.\\S+ with SMTP id \\S+") \
	X(GM2, "by 2002:a\\d\\d:\\w+:\\S+ with SMTP id \\S+") \
	X(GM3, "by smtp\\.googlemail\\.com with ESMTPSA id \\S+") \
	X(D_DATE1, "(?i) (\\d+) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (\\d{4}) ") \
	X(D_DATE2, "(?i) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +(\\d+) \\d+:\\d+:\\d+ (\\d{4}) ") \
	X(D_DATE3, "(?i) (\\d+) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (\\d{2,3}) ") \
	X(D_TIME, " (\\d?\\d):(\\d\\d)(:(\\d\\d))? ") \
	X(D_TZNUM, " ([-+]\\d{4}) ") \
	X(D_TZNAME, "\\b([A-Z]{2,4}(?:-DST)?)\\b") \
	X(RCVD_DATE, "(\\s.?\\d+ \\S\\S\\S \\d+ \\d+:\\d+:\\d+ \\S+)") \
	X(FETCH_LOCAL, "\\bfrom (?:localhost\\s|(?:\\S+ ){1,2}\\S*\\b127\\.0\\.0\\.1\\b)") \
	X(QMAIL_UID, "qmail \\d+ invoked by uid \\d+") \
	X(FETCHMAIL, "\\bby localhost with \\w+ \\(fetchmail-[\\d.]+") \
	X(BOUNCE_RCVD, "(?i)^[> ]*Received:") \
	X(HOSTNAME_LIKE, "^\\w+(?:[\\w.-]+\\.)+\\w+$") \
	X(DOTCOM_HELO, "(?i)(?:\\.|^)(lycos\\.com|lycos\\.co\\.uk|hotmail\\.com|localhost\\.com|excite\\.com|caramail\\.com|cs\\.com|aol\\.com|msn\\.com|yahoo\\.com|drizzle\\.com)$") \
	X(NUMERIC_HELO, "(?i)\\bhelo=(" IP4 ")(?=[\\x00-\\x20,;\\[()<>]|$)") \
	X(ANY_BRACKET_IP, "\\[(" IPRE ")\\]") \
	X(ANY_IP, "^" IPRE "$") \
	X(IS_IP4, "^" IP4 "$") \
	X(DOTQUAD, "^\\d+\\.\\d+\\.\\d+\\.\\d+$")

enum rx_id {
#define X(name, pat) RX_##name,
	RX_LIST
#undef X
	RX_COUNT
};

static const char *const rx_src[RX_COUNT] = {
#define X(name, pat) pat,
	RX_LIST
#undef X
};

static pcre2_code *rx_code[RX_COUNT];
static pthread_once_t rx_once = PTHREAD_ONCE_INIT;

static void rx_compile(void)
{
	for (int i = 0; i < RX_COUNT; i++) {
		int err;
		PCRE2_SIZE off;
		rx_code[i] = pcre2_compile((PCRE2_SPTR)rx_src[i], PCRE2_ZERO_TERMINATED, 0, &err, &off, NULL);
		if (!rx_code[i]) {
			/* a pattern of ours that does not compile is a bug: say which */
			PCRE2_UCHAR msg[160];
			pcre2_get_error_message(err, msg, sizeof msg);
			fprintf(stderr, "eval_relay: pattern %d: %s at %zu\n", i, (char *)msg, (size_t)off);
			abort();
		}
		pcre2_jit_compile(rx_code[i], PCRE2_JIT_COMPLETE);
	}
}

/* a match of one of our patterns, with its captures */
struct rxm {
	pcre2_match_data *md;
	const pcre2_match_context *mctx;
	const char *subj;
	int rc;
};

static int rx(struct rxm *x, enum rx_id id, const char *s, size_t len)
{
	pthread_once(&rx_once, rx_compile);
	x->subj = s;
	x->rc = pcre2_match(rx_code[id], (PCRE2_SPTR)s, len, 0, 0, x->md, (pcre2_match_context *)x->mctx);
	return x->rc > 0;
}

static int rxs(struct rxm *x, enum rx_id id, const char *s) { return rx(x, id, s, strlen(s)); }

/* capture i of the last match into out (bounded); "" when it did not take part */
static void cap(const struct rxm *x, unsigned i, char *out, size_t outlen)
{
	out[0] = '\0';
	if (x->rc <= 0 || i >= (unsigned)x->rc) return;
	PCRE2_SIZE *ov = pcre2_get_ovector_pointer(x->md);
	if (ov[2 * i] == PCRE2_UNSET) return;
	size_t l = ov[2 * i + 1] - ov[2 * i];
	if (l >= outlen) l = outlen - 1;
	memcpy(out, x->subj + ov[2 * i], l);
	out[l] = '\0';
}

static size_t match_start(const struct rxm *x) { return pcre2_get_ovector_pointer(x->md)[0]; }

/* --- addresses ---------------------------------------------------------------- */

struct ipaddr { int v6; unsigned char b[16]; };

static int ip_parse(const char *s, struct ipaddr *a)
{
	memset(a, 0, sizeof *a);
	if (inet_pton(AF_INET, s, a->b) == 1) return 0;
	if (inet_pton(AF_INET6, s, a->b) == 1) {
		static const unsigned char mapped[12] = { 0,0,0,0,0,0,0,0,0,0,0xff,0xff };
		if (memcmp(a->b, mapped, 12) == 0) { memmove(a->b, a->b + 12, 4); memset(a->b + 4, 0, 12); return 0; }
		a->v6 = 1;
		return 0;
	}
	return -1;
}

/* SpamAssassin's IP_PRIVATE: RFC 1918, loopback, link-local, CGN, and
 * their IPv4-mapped forms; IPv6 link-local and ::1 */
static int ip_is_private(const char *s)
{
	struct ipaddr a;
	if (ip_parse(s, &a) < 0) {
		/* SpamAssassin's test is on the text: "10.1.2.08" is private too */
		char *e1, *e2;
		long o1 = strtol(s, &e1, 10), o2 = *e1 == '.' ? strtol(e1 + 1, &e2, 10) : -1;
		if (e1 == s || *e1 != '.' || o2 < 0 || *e2 != '.') return 0;
		a.v6 = 0;
		a.b[0] = (unsigned char)(o1 & 0xff);
		a.b[1] = (unsigned char)(o2 & 0xff);
		if (o1 > 255 || o2 > 255) return 0;
	}
	if (!a.v6) {
		const unsigned char *b = a.b;
		return b[0] == 10 || b[0] == 127 || (b[0] == 169 && b[1] == 254) || (b[0] == 172 && b[1] >= 16 && b[1] <= 31) ||
		       (b[0] == 192 && b[1] == 168) || (b[0] == 100 && b[1] >= 64 && b[1] <= 127);
	}
	static const unsigned char one[16] = { [15] = 1 };
	return (a.b[0] == 0xfe && (a.b[1] & 0xc0) == 0x80) || memcmp(a.b, one, 16) == 0;
}

/* --- configuration: networks, bounce relays, registry boundaries ------------------ */

struct net { int neg; struct ipaddr a; unsigned bits; };
struct netset { struct net *v; size_t n, cap; };

struct strset { char **v; size_t n, cap; int sorted; };

struct relay_conf {
	struct netset trusted, internal, msa;
	int trusted_set, internal_set;
	struct strset bounce;          /* welcomelist_bounce_relays globs, lower case */
	struct strset tld2, tld3;      /* util_rb_2tld / util_rb_3tld */
	struct strset orig_hdrs;       /* originating_ip_headers */
	int orig_hdrs_set;
};

static struct relay_conf *conf_of(struct ruleset *rs)
{
	struct relay_conf *c = rs->evconf[EVF_RELAYS];
	if (!c) {
		c = calloc(1, sizeof *c);
		if (!c) abort();
		rs->evconf[EVF_RELAYS] = c;
	}
	return c;
}

static void strset_add(struct strset *s, const char *w, size_t n)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 64;
		s->v = realloc(s->v, s->cap * sizeof *s->v);
		if (!s->v) abort();
	}
	char *d = strndup(w, n);
	if (!d) abort();
	for (char *p = d; *p; p++) *p = (char)tolower((unsigned char)*p);
	s->v[s->n++] = d;
	s->sorted = 0;
}

static void strset_free(struct strset *s)
{
	for (size_t i = 0; i < s->n; i++) free(s->v[i]);
	free(s->v);
	memset(s, 0, sizeof *s);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int strset_has(const struct strset *s, const char *w)
{
	if (!s->n) return 0;
	if (s->sorted) return bsearch(&w, s->v, s->n, sizeof *s->v, cmp_str) != NULL;
	for (size_t i = 0; i < s->n; i++)     /* a directive came after the last check() */
		if (strcmp(s->v[i], w) == 0) return 1;
	return 0;
}

/* "1.2.3.4", "1.2.3.0/24", "1.2.3", "1.2.3.", "[::1]/128", "!10.1.2.3" */
static int net_parse(const char *w, struct net *n)
{
	char buf[80];
	memset(n, 0, sizeof *n);
	if (*w == '!') { n->neg = 1; w++; }
	size_t wl = strlen(w);
	if (wl >= sizeof buf) return -1;
	memcpy(buf, w, wl + 1);
	char *slash = strchr(buf, '/');
	long bits = -1;
	if (slash) {
		*slash = '\0';
		char *end;
		bits = strtol(slash + 1, &end, 10);
		if (*end || bits < 0) return -1;
	}
	char *a = buf;
	if (*a == '[') {
		a++;
		char *e = strchr(a, ']');
		if (!e || e[1]) return -1;
		*e = '\0';
	}
	if (strchr(a, ':')) {
		if (inet_pton(AF_INET6, a, n->a.b) != 1) return -1;
		n->a.v6 = 1;
		if (bits > 128) return -1;
		n->bits = bits < 0 ? 128 : (unsigned)bits;
		static const unsigned char mapped[12] = { 0,0,0,0,0,0,0,0,0,0,0xff,0xff };
		if (memcmp(n->a.b, mapped, 12) == 0) {
			memmove(n->a.b, n->a.b + 12, 4);
			memset(n->a.b + 4, 0, 12);
			n->a.v6 = 0;
			n->bits = n->bits >= 96 ? n->bits - 96 : 0;
		}
		return 0;
	}
	/* IPv4, possibly partial ("10." / "10.1") */
	unsigned octets = 0;
	char *p = a;
	size_t al = strlen(a);
	if (al && a[al - 1] == '.') a[--al] = '\0';
	while (*p) {
		char *end;
		long v = strtol(p, &end, 10);
		if (end == p || v < 0 || v > 255 || octets == 4) return -1;
		n->a.b[octets++] = (unsigned char)v;
		if (*end == '.') end++;
		else if (*end) return -1;
		p = end;
	}
	if (!octets) return -1;
	if (bits > 32) return -1;
	n->bits = bits < 0 ? octets * 8 : (unsigned)bits;
	return 0;
}

static int net_contains(const struct net *n, const struct ipaddr *a)
{
	if (n->a.v6 != a->v6) return 0;
	unsigned full = n->bits / 8, rest = n->bits % 8;
	if (memcmp(n->a.b, a->b, full) != 0) return 0;
	if (rest) {
		unsigned char mask = (unsigned char)(0xff << (8 - rest));
		if ((n->a.b[full] & mask) != (a->b[full] & mask)) return 0;
	}
	return 1;
}

/* as SpamAssassin's NetSet: the first entry containing the address decides */
static int netset_contains(const struct netset *s, const char *ip)
{
	struct ipaddr a;
	if (!ip || ip_parse(ip, &a) < 0) return 0;
	for (size_t i = 0; i < s->n; i++)
		if (net_contains(&s->v[i], &a)) return !s->v[i].neg;
	return 0;
}

static int netset_add_words(struct netset *s, const char *args, char *why, size_t whylen)
{
	const char *p = args;
	while (*p) {
		while (*p == ' ' || *p == '\t') p++;
		if (!*p) break;
		const char *e = p;
		while (*e && *e != ' ' && *e != '\t') e++;
		char w[96];
		size_t l = (size_t)(e - p);
		if (l >= sizeof w) { snprintf(why, whylen, "network too long"); return -1; }
		memcpy(w, p, l);
		w[l] = '\0';
		struct net n;
		if (net_parse(w, &n) < 0) { snprintf(why, whylen, "bad network \"%s\"", w); return -1; }
		if (s->n >= MAX_NETS) { snprintf(why, whylen, "too many networks"); return -1; }
		if (s->n == s->cap) {
			s->cap = s->cap ? s->cap * 2 : 16;
			s->v = realloc(s->v, s->cap * sizeof *s->v);
			if (!s->v) abort();
		}
		s->v[s->n++] = n;
		p = e;
	}
	return 0;
}

static void words_to_set(struct strset *s, const char *args, size_t max)
{
	const char *p = args;
	while (*p && s->n < max) {
		while (*p == ' ' || *p == '\t') p++;
		const char *e = p;
		while (*e && *e != ' ' && *e != '\t') e++;
		if (e > p) strset_add(s, p, (size_t)(e - p));
		p = e;
	}
}

static int relay_directive(struct ruleset *rs, const char *dir, const char *args, char *why, size_t whylen)
{
	struct relay_conf *c;
	if (strcmp(dir, "trusted_networks") == 0 || strcmp(dir, "internal_networks") == 0 ||
	    strcmp(dir, "msa_networks") == 0) {
		c = conf_of(rs);
		struct netset *s = dir[0] == 't' ? &c->trusted : dir[0] == 'i' ? &c->internal : &c->msa;
		if (dir[0] == 't') c->trusted_set = 1;
		if (dir[0] == 'i') c->internal_set = 1;
		return netset_add_words(s, args, why, whylen) < 0 ? -1 : 1;
	}
	if (strcmp(dir, "clear_trusted_networks") == 0 || strcmp(dir, "clear_internal_networks") == 0 ||
	    strcmp(dir, "clear_msa_networks") == 0) {
		c = conf_of(rs);
		struct netset *s = dir[6] == 't' ? &c->trusted : dir[6] == 'i' ? &c->internal : &c->msa;
		free(s->v);
		memset(s, 0, sizeof *s);
		if (dir[6] == 't') c->trusted_set = 0;
		if (dir[6] == 'i') c->internal_set = 0;
		return 1;
	}
	if (strcmp(dir, "welcomelist_bounce_relays") == 0 || strcmp(dir, "whitelist_bounce_relays") == 0) {
		words_to_set(&conf_of(rs)->bounce, args, MAX_BOUNCE);
		return 1;
	}
	if (strcmp(dir, "originating_ip_headers") == 0) {
		c = conf_of(rs);
		c->orig_hdrs_set = 1;
		words_to_set(&c->orig_hdrs, args, 64);
		return 1;
	}
	if (strcmp(dir, "clear_originating_ip_headers") == 0) {
		c = conf_of(rs);
		strset_free(&c->orig_hdrs);
		c->orig_hdrs_set = 1;
		return 1;
	}
	/* registry boundaries: other modules (URI domains) may want them too,
	 * so they are recorded and left to them as well (0) */
	if (strcmp(dir, "util_rb_2tld") == 0 || strcmp(dir, "util_rb_3tld") == 0) {
		c = conf_of(rs);
		words_to_set(dir[8] == '2' ? &c->tld2 : &c->tld3, args, (size_t)-1);
		return 0;
	}
	return 0;
}

static void relay_free_conf(struct ruleset *rs)
{
	struct relay_conf *c = rs->evconf[EVF_RELAYS];
	if (!c) return;
	free(c->trusted.v);
	free(c->internal.v);
	free(c->msa.v);
	strset_free(&c->bounce);
	strset_free(&c->tld2);
	strset_free(&c->tld3);
	strset_free(&c->orig_hdrs);
	free(c);
	rs->evconf[EVF_RELAYS] = NULL;
}

/* sorted lazily on first use: the ruleset is read-only once scanning
 * starts, so this is done from the check() of the rules that need it */
static void conf_prepare(struct ruleset *rs)
{
	struct relay_conf *c = conf_of(rs);
	if (!c->tld2.sorted) { if (c->tld2.n) qsort(c->tld2.v, c->tld2.n, sizeof *c->tld2.v, cmp_str); c->tld2.sorted = 1; }
	if (!c->tld3.sorted) { if (c->tld3.n) qsort(c->tld3.v, c->tld3.n, sizeof *c->tld3.v, cmp_str); c->tld3.sorted = 1; }
}

/* bounded copy that says so (snprintf of a longer buffer draws warnings) */
static void copy_trunc(char *dst, size_t dstlen, const char *src)
{
	size_t l = strlen(src);
	if (l >= dstlen) l = dstlen - 1;
	memcpy(dst, src, l);
	dst[l] = '\0';
}

/* --- one Received field ---------------------------------------------------------- */

enum rcvd_rc { RC_UNPARSEABLE = -1, RC_SKIP = 0, RC_RELAY = 1, RC_FETCHER = 2 };

struct rcvd {
	char ip[64], rdns[256], helo[256], by[256], ident[64], envfrom[320], id[128], auth[64];
	int has_envfrom, mta_dns;
};

struct parse_state {
	struct rxm x;
	char qms_envfrom[320];     /* qmail-scanner's envelope sender, for the next (older) field */
	int qms_set;
};

#define CAP(i, f) cap(&ps->x, (i), r->f, sizeof r->f)
#define M(id) rx(&ps->x, RX_##id, s, strlen(s))

/* SpamAssassin marks characters that do not belong in a host name or
 * address with '!' ("[1.2.3.4]" becomes "!1.2.3.4!") */
static void mark_bad_chars(char *s)
{
	for (; *s; s++)
		if (isspace((unsigned char)*s) || strchr("#[]()<>|", *s)) *s = '!';
}

static void clean_envfrom(char *e)
{
	char *p = e;
	while (isspace((unsigned char)*p) || *p == '<') p++;
	memmove(e, p, strlen(p) + 1);
	size_t l = strlen(e);
	while (l && (isspace((unsigned char)e[l - 1]) || e[l - 1] == '>')) e[--l] = '\0';
	mark_bad_chars(e);
}

/* the "helo=" and "ident=" parts of an Exim-style comment */
static void sub_helo_ident(struct parse_state *ps, const char *sub, struct rcvd *r, int want_helo)
{
	struct rxm y = ps->x;
	if (want_helo && rxs(&y, RX_SUB_HELO, sub)) cap(&y, 1, r->helo, sizeof r->helo);
	if (rxs(&y, RX_SUB_IDENT, sub)) cap(&y, 1, r->ident, sizeof r->ident);
}

static void strip_ident_at(char *ident)
{
	size_t l = strlen(ident);
	if (l && ident[l - 1] == '@') ident[l - 1] = '\0';
}

/* the formats after "from " (lower case): a relay, a skip, or not known (0) */
static int parse_from(struct parse_state *ps, const char *s, struct rcvd *r)
{
	char sub[RCVD_MAX_LINE];
	if (M(ENVFROM)) { CAP(1, envfrom); r->has_envfrom = 1; }
	if (M(SQUIRREL) && M(SQUIRREL_IP)) { CAP(1, ip); CAP(2, by); return RC_RELAY; }
	if (strstr(s, "aol.com") && strstr(s, "with HTTP (WebMailUI)") && M(AOL_WEB)) { CAP(1, ip); CAP(2, by); return RC_RELAY; }

	if (strstr(s, " SMTPSVC")) {
		if (M(SMTPSVC)) { CAP(1, helo); CAP(2, ip); CAP(3, by); return RC_RELAY; }
		if (M(SMTPSVC_PICKUP)) return RC_SKIP;
	} else if (M(MSSMTP_G)) {
		if (M(MSSMTP)) { CAP(1, helo); CAP(2, ip); CAP(3, by); r->id[0] = '\0'; return RC_RELAY; }
	} else if (strstr(s, "[XMail ")) {
		if (M(XMAIL)) {
			CAP(1, helo); CAP(2, ip); CAP(3, by);
			if (M(XMAIL_ID)) CAP(1, id);
			if (M(XMAIL_FROM)) { CAP(1, envfrom); r->has_envfrom = 1; }
			return RC_RELAY;
		}
	} else if (M(ECELERITY)) {
		if (M(ECEL1)) { CAP(1, ip); CAP(2, helo); CAP(3, by); return RC_RELAY; }
		if (M(ECEL2)) { CAP(1, ip); CAP(2, by); return RC_RELAY; }
	} else if (strstr(s, "Exim")) {
		if (M(EXIM_LOCAL)) return RC_SKIP;
		if (M(EXIM1)) {
			CAP(1, ip); CAP(3, by); cap(&ps->x, 2, sub, sizeof sub);
			sub_helo_ident(ps, sub, r, 1);
			return RC_RELAY;
		}
		if (M(EXIM2)) {
			CAP(1, rdns); CAP(2, ip); CAP(4, by); cap(&ps->x, 3, sub, sizeof sub);
			snprintf(r->helo, sizeof r->helo, "%s", r->rdns);
			sub_helo_ident(ps, sub, r, 1);
			return RC_RELAY;
		}
		if (M(EXIM3)) { CAP(1, rdns); CAP(2, ip); CAP(1, helo); CAP(4, by); return RC_RELAY; }
		if (M(EXIM4_RDNS)) CAP(1, rdns);
		if (M(EXIM4_HELO)) CAP(1, helo);
		if (M(EXIM4_IP)) CAP(1, ip);
		if (M(EXIM4_BY)) { CAP(1, by); if (r->ip[0]) return RC_RELAY; }
	} else if (strstr(s, " (Postfix) with")) {
		if (M(POSTFIX1) || M(POSTFIX2)) {
			r->mta_dns = 1;
			CAP(1, helo); CAP(2, rdns); CAP(3, ip); CAP(4, by);
			if (strcmp(r->rdns, "unknown") == 0) r->rdns[0] = '\0';
			return RC_RELAY;
		}
	} else if (strstr(s, "(Scalix SMTP Relay")) {
		if (M(SCALIX)) { CAP(1, helo); CAP(2, ip); CAP(3, by); return RC_RELAY; }
	} else if (strstr(s, " (Lotus Domino ")) {
		if (M(DOMINO)) { r->mta_dns = 0; CAP(1, helo); CAP(2, ip); CAP(3, by); return RC_RELAY; }
	}

	if (M(WITH_HTTP) && M(HTTP_NUM)) { CAP(1, ip); CAP(2, by); return RC_RELAY; }
	if (!M(QMAIL_LDAP) && M(SENDMAIL1)) {
		r->mta_dns = 1;
		CAP(1, helo); CAP(2, rdns); CAP(3, ip); CAP(4, by);
		struct rxm y = ps->x;
		char rest[256];
		if (rxs(&y, RX_IDENT_PFX1, r->rdns) || rxs(&y, RX_IDENT_PFX2, r->rdns)) {
			cap(&y, 1, r->ident, sizeof r->ident);
			size_t end = pcre2_get_ovector_pointer(y.md)[1];
			snprintf(rest, sizeof rest, "%s", r->rdns + end);
			snprintf(r->rdns, sizeof r->rdns, "%s", rest);
			/* SpamAssassin strips an "IDENT:x@" and then any other "x@" */
			if (rxs(&y, RX_IDENT_PFX2, r->rdns)) {
				cap(&y, 1, r->ident, sizeof r->ident);
				end = pcre2_get_ovector_pointer(y.md)[1];
				snprintf(rest, sizeof rest, "%s", r->rdns + end);
				snprintf(r->rdns, sizeof r->rdns, "%s", rest);
			}
		}
		return RC_RELAY;
	}
	if (M(EXCH55)) { r->mta_dns = 1; CAP(2, rdns); CAP(3, ip); CAP(1, helo); CAP(4, by); return RC_RELAY; }
	if (M(HELOEQ_WITH)) { CAP(1, rdns); CAP(2, ip); CAP(3, helo); CAP(4, by); return RC_RELAY; }
	if (M(ATTBI1)) { CAP(1, helo); CAP(2, ip); CAP(3, by); return RC_RELAY; }
	if (M(ATTBI2)) { r->mta_dns = 1; CAP(1, helo); CAP(2, rdns); CAP(3, ip); CAP(4, by); return RC_RELAY; }
	if (M(IDENT_AT)) { r->mta_dns = 1; CAP(1, helo); CAP(3, ip); CAP(4, by); CAP(2, ident); return RC_RELAY; }
	if (M(HOTMAIL_BY)) { CAP(1, by); if (M(LEAD_IP)) CAP(1, ip); return RC_RELAY; }
	if (M(QPSMTPD) || M(LMTP) || M(GMX)) { CAP(1, rdns); CAP(2, helo); CAP(3, ip); CAP(4, by); return RC_RELAY; }
	if (M(SMTPD_FOR)) { CAP(1, helo); CAP(2, ip); CAP(3, by); return RC_RELAY; }
	if (M(QMAIL_G)) {
		if (M(QMAIL1)) { CAP(1, rdns); CAP(2, helo); CAP(3, ident); CAP(4, ip); CAP(6, by); }
		else if (M(QMAIL2)) { CAP(1, rdns); CAP(2, helo); CAP(3, ip); CAP(5, by); }
		else if (M(QMAIL3)) { CAP(1, helo); CAP(1, rdns); CAP(2, ident); CAP(3, ip); CAP(5, by); }
		else if (M(QMAIL4)) { CAP(1, helo); CAP(1, rdns); CAP(2, ip); CAP(4, by); }
		if (strcmp(r->rdns, "unknown") != 0) r->mta_dns = 1;
		else r->rdns[0] = '\0';
		return RC_RELAY;
	}
	if (M(VIA_HTTP)) { CAP(1, ip); CAP(2, by); return RC_RELAY; }
	if (M(SP_BRACKET)) { CAP(2, ip); CAP(3, by); return RC_RELAY; }
	if (M(PAREN_HELO)) { CAP(1, helo); CAP(2, ip); CAP(3, by); return RC_RELAY; }
	if (M(BRACKET_BY)) { CAP(1, ip); CAP(2, by); return RC_RELAY; }
	if (M(PAREN_IP_BY)) { CAP(1, ip); CAP(2, by); return RC_RELAY; }
	if (M(MDAEMON1)) { r->mta_dns = 1; CAP(1, helo); CAP(2, ip); CAP(3, by); return RC_RELAY; }
	if (M(MDAEMON2)) { CAP(1, helo); CAP(2, ip); CAP(3, by); return RC_RELAY; }
	if (M(SENDMAIL2)) { r->mta_dns = 1; CAP(1, helo); CAP(2, ip); CAP(3, by); return RC_RELAY; }
	if (M(SENDMAIL3)) {
		char two[64];
		cap(&ps->x, 2, two, sizeof two);
		if (strcmp(two, "softdnserr") == 0) r->mta_dns = 0;
		else { r->mta_dns = 1; CAP(2, rdns); }
		CAP(1, helo); CAP(3, ip); CAP(4, by);
		return RC_RELAY;
	}
	if (M(SENDMAIL4)) { r->mta_dns = 1; CAP(1, helo); CAP(2, ip); CAP(3, by); return RC_RELAY; }
	if (M(SENDMAIL5)) { r->mta_dns = 1; CAP(1, helo); CAP(2, rdns); CAP(3, ip); CAP(4, by); return RC_RELAY; }
	if (M(FETCHER)) return RC_FETCHER;
	if (M(QMAILISH1)) {
		r->mta_dns = 1; CAP(1, rdns); CAP(2, helo); CAP(3, ident); CAP(4, ip); CAP(5, by);
		strip_ident_at(r->ident);
		return RC_RELAY;
	}
	if (M(QMAILISH2)) {
		r->mta_dns = 1; CAP(1, rdns); CAP(1, helo); CAP(2, ident); CAP(3, ip); CAP(4, by);
		strip_ident_at(r->ident);
		return RC_RELAY;
	}
	if (M(HTTP_FOR)) { CAP(1, ip); CAP(2, by); return RC_RELAY; }
	if (M(SMAP1)) { r->mta_dns = 1; CAP(1, rdns); CAP(2, ip); CAP(3, by); return RC_RELAY; }
	if (M(SMAP2)) { r->mta_dns = 1; CAP(1, rdns); CAP(2, ip); CAP(3, helo); CAP(4, by); return RC_RELAY; }
	if (M(POSTOFFICE) || M(ARGOSOFT) || M(INTERSCAN)) { CAP(1, ip); CAP(2, by); return RC_RELAY; }
	if (M(BSMTP)) return RC_SKIP;
	if (M(SPIKE)) { r->mta_dns = 1; CAP(1, helo); CAP(2, rdns); CAP(3, ip); CAP(4, by); return RC_RELAY; }
	if (M(YAHOO_PLAIN)) { r->mta_dns = 1; CAP(1, rdns); CAP(2, helo); CAP(4, ip); CAP(5, by); CAP(3, ident); return RC_RELAY; }
	if (M(CGP_ACCOUNT)) { CAP(1, ip); CAP(2, helo); CAP(3, by); return RC_RELAY; }
	if (strstr(s, " (CommuniGate Pro") && M(CGP_VERIFIED)) {
		r->mta_dns = 1; CAP(1, rdns); CAP(1, helo); CAP(2, ip); CAP(3, by); return RC_RELAY;
	}
	if (M(CIPHERTRUST)) { CAP(1, ip); CAP(2, by); return RC_RELAY; }
	if (M(IRONPORT)) { CAP(1, helo); CAP(2, ip); CAP(3, by); return RC_RELAY; }
	if (M(CONTENTTECH)) return RC_SKIP;
	if (M(TWO_BRACKETS)) { CAP(1, helo); CAP(2, ip); CAP(4, by); return RC_RELAY; }
	if (M(IP_BY_WITH)) { CAP(1, ip); CAP(2, by); return RC_RELAY; }
	if (M(POBOX)) { r->mta_dns = 1; CAP(1, helo); CAP(2, rdns); CAP(3, ip); CAP(4, by); return RC_RELAY; }
	if (M(FSECURE) || M(ALTAVISTA)) { CAP(1, ip); CAP(2, helo); CAP(3, by); return RC_RELAY; }
	if (M(SMTPD32)) { CAP(1, helo); CAP(2, ip); CAP(3, by); return RC_RELAY; }
	if (M(CSMAP)) { CAP(1, rdns); CAP(2, ip); CAP(3, by); return RC_RELAY; }
	if (M(MAILGATE)) { CAP(1, ip); CAP(2, by); return RC_RELAY; }
	if (M(UNVERIFIED)) { CAP(1, helo); CAP(2, ip); CAP(3, by); return RC_RELAY; }
	if (M(PROXYING)) { CAP(1, ip); CAP(2, by); return RC_RELAY; }
	if (M(BRACKET_SUB)) {
		CAP(1, ip); CAP(3, by); cap(&ps->x, 2, sub, sizeof sub);
		sub_helo_ident(ps, sub, r, 1);
		return RC_RELAY;
	}
	if (M(IDENT_IP_WITH)) { CAP(1, rdns); CAP(2, ip); CAP(3, by); return RC_RELAY; }
	if (M(OBTUSE)) {
		CAP(1, rdns); CAP(2, ip); CAP(3, helo); CAP(4, by);
		if (strcmp(r->rdns, "UNKNOWN") != 0) r->mta_dns = 1;
		return RC_RELAY;
	}
	if (M(YAHOO_LOGIN)) { CAP(1, helo); CAP(3, ip); CAP(4, by); return RC_RELAY; }
	if (M(XORIG)) { CAP(1, ip); r->by[0] = '\0'; return RC_RELAY; }

	/* handovers known to carry nothing useful */
	static const enum rx_id ignore1[] = { RX_IGN1, RX_IGN2, RX_IGN3, RX_IGN4, RX_IGN5, RX_IGN6, RX_IGN7,
		RX_IGN8, RX_IGN9, RX_IGN10, RX_IGN11, RX_IGN12, RX_IGN13, RX_IGN14 };
	for (size_t i = 0; i < sizeof ignore1 / sizeof *ignore1; i++)
		if (rx(&ps->x, ignore1[i], s, strlen(s))) return RC_SKIP;
	if (M(QMS)) {
		/* qmail-scanner logs the envelope sender of the handover the
		 * next (older) field describes */
		if (r->has_envfrom) clean_envfrom(r->envfrom);
		snprintf(ps->qms_envfrom, sizeof ps->qms_envfrom, "%s", r->has_envfrom ? r->envfrom : "");
		ps->qms_set = r->has_envfrom;
		return RC_SKIP;
	}
	static const enum rx_id ignore2[] = { RX_IGN15, RX_IGN16, RX_IGN17, RX_IGN18, RX_IGN19, RX_IGN20,
		RX_IGN21, RX_IGN22, RX_IGN23, RX_IGN24, RX_IGN25, RX_IGN26 };
	for (size_t i = 0; i < sizeof ignore2 / sizeof *ignore2; i++)
		if (rx(&ps->x, ignore2[i], s, strlen(s))) return RC_SKIP;
	if (!r->helo[0] && M(GUESS_HELO)) CAP(1, helo);
	return 3;   /* not known: fall through to the general patterns */
}

/* parse one unfolded Received value into r */
static int parse_received(struct parse_state *ps, const char *value, struct rcvd *r)
{
	char line[RCVD_MAX_LINE];
	size_t n = 0;
	memset(r, 0, sizeof *r);
	/* whitespace runs become one space, trimmed, bounded */
	for (const char *p = value; *p && n + 1 < sizeof line; p++) {
		if (isspace((unsigned char)*p)) {
			if (n && line[n - 1] != ' ') line[n++] = ' ';
		} else {
			line[n++] = *p;
		}
	}
	while (n && line[n - 1] == ' ') n--;
	line[n] = '\0';
	/* trailing ";" (with an optional space before) */
	while (n && line[n - 1] == ';') {
		line[--n] = '\0';
		if (n && line[n - 1] == ' ') line[--n] = '\0';
	}
	char *s = line;
	if (strncasecmp(s, "from ", 5) != 0 && strncasecmp(s, "(from ", 6) != 0) return RC_SKIP;
	if (M(WITH_LOCAL_FOR)) return RC_SKIP;
	if (M(FROM_BY_SEMI)) {
		char one[256];
		cap(&ps->x, 1, one, sizeof one);
		int bracket_ip = one[0] == '[' && strlen(one) > 2 && one[strlen(one) - 1] == ']' &&
		                 strspn(one + 1, "0123456789.") == strlen(one) - 2;
		if (!bracket_ip) return RC_SKIP;
	}
	if (M(DATE_TAIL)) line[match_start(&ps->x)] = '\0';
	char *fix = strstr(s, ")by ");
	if (fix && strlen(line) + 1 < sizeof line) {
		memmove(fix + 2, fix + 1, strlen(fix + 1) + 1);
		fix[1] = ' ';
	}

	if (M(ID)) CAP(1, id);
	if (M(HELO_EQ)) CAP(1, helo);
	else if (M(HELO_WORD)) CAP(1, helo);
	if (M(BY)) CAP(1, by);

	/* authenticated submission, as the receivers write it */
	if (strstr(s, " by ") && M(AUTH_RFC3848)) CAP(1, auth);
	else if (M(AUTH_GMAIL) && M(AUTH_GMAIL_TLS)) {
		char v[64], c[128];
		cap(&ps->x, 1, v, sizeof v);
		cap(&ps->x, 2, c, sizeof c);
		char t[256];
		snprintf(t, sizeof t, "GMail - transport=%s cipher=%s", v, c);
		copy_trunc(r->auth, sizeof r->auth, t);
	} else if (M(AUTH_COURIER)) CAP(1, auth);
	else if (strstr(s, "authenticated") && M(AUTH_SENDMAIL)) snprintf(r->auth, sizeof r->auth, "Sendmail");
	else if (M(AUTH_GMX)) {
		char by[64], proto[16];
		cap(&ps->x, 3, by, sizeof by);
		cap(&ps->x, 4, proto, sizeof proto);
		char t[128];
		snprintf(t, sizeof t, "GMX (%s / %s)", proto, by);
		copy_trunc(r->auth, sizeof r->auth, t);
	} else if (strstr(s, " (authenticated as ") && M(AUTH_CP)) snprintf(r->auth, sizeof r->auth, "CriticalPath");
	else if (M(AUTH_POSTFIX)) {
		char name[48];
		cap(&ps->x, 1, name, sizeof name);
		if (strcmp(name, "Postfix") == 0) snprintf(r->auth, sizeof r->auth, "Postfix");
		else snprintf(r->auth, sizeof r->auth, "Postfix (%s)", name);
	} else if (M(AUTH_CGP) && strstr(s, " (account ")) snprintf(r->auth, sizeof r->auth, "Communigate");
	else if (M(HTTP_DAV)) snprintf(r->auth, sizeof r->auth, "HTTP-DAV");
	else if (strstr(s, " by ") && M(AUTH_VIA_HTTP)) CAP(1, auth);

	if (strncmp(s, "from ", 5) == 0) {
		s += 5;
		int rc = parse_from(ps, s, r);
		if (rc != 3) {
			if (rc == RC_RELAY) goto enough;
			return rc;
		}
	} else if (strncmp(s, "FROM ", 5) == 0) {
		s += 5;
		if (M(SIMTA)) {
			r->mta_dns = 1;
			CAP(1, helo); CAP(2, rdns); CAP(3, ip); CAP(4, by); CAP(5, id);
			if (strcmp(r->rdns, "unverified") == 0) r->rdns[0] = '\0';
			goto enough;
		}
	} else if (strncmp(s, "(from ", 6) == 0) {
		s += 6;
		if (M(NAVGW)) { CAP(1, helo); CAP(2, ip); CAP(3, by); goto enough; }
		if (M(PFROM_LOCAL) || M(JQUEUE)) return RC_SKIP;
	}
	if (!r->ip[0] && M(ANY_BRACKET_IP)) CAP(1, ip);
	if (r->ip[0] && r->by[0]) goto enough;
	return RC_UNPARSEABLE;

enough:;
	size_t l = strlen(r->rdns);
	while (l && r->rdns[l - 1] == '.') r->rdns[--l] = '\0';
	if (strcasecmp(r->rdns, "unknown") == 0 || r->rdns[0] == '[') r->rdns[0] = '\0';
	char *ip = r->ip;
	if (strncasecmp(ip, "ipv6:", 5) == 0) memmove(ip, ip + 5, strlen(ip + 5) + 1);
	if (ip[0] == '[') memmove(ip, ip + 1, strlen(ip));
	l = strlen(ip);
	if (l && ip[l - 1] == ']') ip[--l] = '\0';
	char *pct = strchr(ip, '%');
	if (pct && strspn(pct + 1, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-") == strlen(pct + 1)) *pct = '\0';
	{
		struct rxm y = ps->x;
		char v4[64];
		if (rxs(&y, RX_V4MAPPED, ip)) { cap(&y, 1, v4, sizeof v4); snprintf(r->ip, sizeof r->ip, "%s", v4); }
	}
	l = strlen(r->by);
	if (l && r->by[l - 1] == ';') r->by[--l] = '\0';
	mark_bad_chars(r->ip);
	mark_bad_chars(r->rdns);
	mark_bad_chars(r->helo);
	mark_bad_chars(r->by);
	mark_bad_chars(r->ident);
	if (r->has_envfrom) clean_envfrom(r->envfrom);
	return RC_RELAY;
}
#undef M
#undef CAP

/* --- the chain and its trust path -------------------------------------------------- */

/* originating_ip_headers of Debian's stock configuration (10_default_prefs.cf),
 * used when the rule files name none */
static const char *const default_orig_hdrs[] = { "X-Yahoo-Post-IP", "X-Originating-IP", "X-Apparently-From",
	"X-SenderIP", "X-AOL-IP", "X-MS-Exchange-CrossTenant-OriginalAttributedTenantConnectingIp", NULL };

static void relays_free(void *p)
{
	struct eval_relays *r = p;
	if (!r) return;
	free(r->relay);
	free(r);
}

static int is_loopback(const char *ip)
{
	struct ipaddr a;
	if (ip_parse(ip, &a) < 0) return 0;
	static const unsigned char one[16] = { [15] = 1 };
	return a.v6 ? memcmp(a.b, one, 16) == 0 : a.b[0] == 127;
}

static const char *hdr_value(const struct rules_header *h) { return h->decoded ? h->decoded : h->raw; }

static void fill_relay(struct eval_relay *e, const struct rcvd *r)
{
	memset(e, 0, sizeof *e);
	snprintf(e->ip, sizeof e->ip, "%s", r->ip);
	snprintf(e->rdns, sizeof e->rdns, "%s", r->rdns);
	snprintf(e->helo, sizeof e->helo, "%s", r->helo);
	snprintf(e->by, sizeof e->by, "%s", r->by);
	snprintf(e->ident, sizeof e->ident, "%s", r->ident);
	snprintf(e->envfrom, sizeof e->envfrom, "%s", r->envfrom);
	snprintf(e->id, sizeof e->id, "%s", r->id);
	snprintf(e->auth, sizeof e->auth, "%s", r->auth);
	e->has_envfrom = r->has_envfrom;
	e->no_reverse_dns = !r->rdns[0] && r->mta_dns;
	e->ip_private = ip_is_private(r->ip);
}

const struct eval_relays *eval_relays(struct eval_msg *m)
{
	struct eval_relays *rl = eval_cache_get(m, EVC_RELAYS);
	if (rl) return rl;
	rl = calloc(1, sizeof *rl);
	if (!rl) abort();
	rl->relay = calloc(MAX_RELAYS + 16, sizeof *rl->relay);
	if (!rl->relay) abort();
	rl->last_trusted_rcvd = rl->last_internal_rcvd = -1;
	eval_cache_set(m, EVC_RELAYS, rl, relays_free);

	const struct relay_conf *c = m->rs ? m->rs->evconf[EVF_RELAYS] : NULL;
	static const struct netset none;
	const struct netset *trusted = c ? &c->trusted : &none, *internal = c ? &c->internal : &none,
		*msa = c ? &c->msa : &none;
	int user_trust = c && c->trusted_set, user_internal = c && c->internal_set;
	if (user_trust && !user_internal) internal = trusted;
	else if (!user_trust && user_internal) trusted = internal;
	int configured = user_trust || user_internal;

	struct parse_state ps;
	memset(&ps, 0, sizeof ps);
	ps.x.md = m->md;
	ps.x.mctx = m->rs ? m->rs->mctx : NULL;

	/* the items: the client hop (when known), the Received fields top
	 * first, then the originating-IP fields as synthetic Received fields */
	const char *items[MAX_RELAYS + 8];
	char synth[8][96];
	size_t nitems = 0, nsynth = 0;
	int hop = m->in->client_ip && *m->in->client_ip;
	if (hop) items[nitems++] = NULL;
	for (size_t i = 0; i < m->in->nheaders && nitems < MAX_RELAYS; i++)
		if (strcasecmp(m->in->headers[i].name, "Received") == 0) items[nitems++] = hdr_value(&m->in->headers[i]);
	{
		const char *const *names = default_orig_hdrs;
		const char *cfg[16];
		if (c && c->orig_hdrs_set) {
			size_t k = 0;
			for (; k < c->orig_hdrs.n && k < 15; k++) cfg[k] = c->orig_hdrs.v[k];
			cfg[k] = NULL;
			names = cfg;
		}
		for (size_t k = 0; names[k] && nsynth < 8; k++) {
			const char *v = eval_header_first(m, names[k]);
			if (!v) continue;
			struct rxm y = ps.x;
			char ip[64] = "";
			if (rxs(&y, RX_FIND_IP, v)) cap(&y, 1, ip, sizeof ip);
			if (!ip[0]) continue;
			snprintf(synth[nsynth], sizeof synth[nsynth], "from X-Originating-IP: %s", ip);
			items[nitems++] = synth[nsynth++];
		}
	}

	int in_trusted = 1, in_internal = 1, found_msa = 0, allow_fetch = 1;
	for (size_t k = 0; k < nitems; k++) {
		struct rcvd r;
		int rc;
		int qms = ps.qms_set;
		char qms_from[sizeof ps.qms_envfrom];
		memcpy(qms_from, ps.qms_envfrom, sizeof qms_from);
		ps.qms_set = 0;
		if (hop && k == 0) {
			memset(&r, 0, sizeof r);
			snprintf(r.ip, sizeof r.ip, "%s", m->in->client_ip);
			if (m->in->client_name) snprintf(r.rdns, sizeof r.rdns, "%s", m->in->client_name);
			if (m->in->helo) snprintf(r.helo, sizeof r.helo, "%s", m->in->helo);
			if (m->in->receiver) snprintf(r.by, sizeof r.by, "%s", m->in->receiver);
			if (m->in->authenticated) snprintf(r.auth, sizeof r.auth, "ESMTPA");
			if (m->in->mail_from) { snprintf(r.envfrom, sizeof r.envfrom, "%s", m->in->mail_from); r.has_envfrom = 1; }
			r.mta_dns = 1;
			mark_bad_chars(r.ip);
			mark_bad_chars(r.rdns);
			mark_bad_chars(r.helo);
			mark_bad_chars(r.by);
			rc = RC_RELAY;
		} else {
			rc = parse_received(&ps, items[k], &r);
		}
		if (rc == RC_UNPARSEABLE) rl->unparseable++;
		if (rc != RC_RELAY) {
			if (rc == RC_FETCHER && allow_fetch) rl->n = rl->ntrusted = rl->ninternal = 0;
			if (in_trusted) rl->last_trusted_rcvd++;
			if (in_internal) rl->last_internal_rcvd++;
			continue;
		}
		if (qms) { snprintf(r.envfrom, sizeof r.envfrom, "%s", qms_from); r.has_envfrom = 1; }
		struct eval_relay e;
		fill_relay(&e, &r);
		e.client_hop = hop && k == 0;

		if (in_trusted && !found_msa) {
			if (!configured) {
				/* SpamAssassin's inference: private addresses and
				 * authenticated handovers are ours; trust ends at the
				 * first other one */
				if (!e.ip_private && !e.auth[0]) in_trusted = in_internal = 0;
			} else if (!e.auth[0] && !netset_contains(trusted, e.ip) && !is_loopback(e.ip)) {
				in_trusted = in_internal = 0;
			} else {
				if (in_internal && !e.auth[0] && !netset_contains(internal, e.ip) && !is_loopback(e.ip))
					in_internal = 0;
				if (netset_contains(msa, e.ip)) { found_msa = 1; e.msa = 1; }
			}
		}
		e.internal = in_internal;
		e.trusted = in_trusted;
		if (in_trusted) { allow_fetch = 1; rl->last_trusted_rcvd++; }
		else allow_fetch = 0;
		if (in_internal) rl->last_internal_rcvd++;
		if (rl->n < MAX_RELAYS + 8) {
			rl->relay[rl->n++] = e;
			if (e.trusted) rl->ntrusted++;
			if (e.internal) rl->ninternal++;
		}
	}
	return rl;
}

/* SpamAssassin's as_string form of one relay */
static size_t relay_string(const struct eval_relay *e, char *out, size_t outlen)
{
	int n = snprintf(out, outlen, "[ ip=%s rdns=%s helo=%s by=%s ident=%s envfrom=%s intl=%d id=%s auth=%s msa=%d ]",
	                 e->ip, e->rdns, e->helo, e->by, e->ident, e->envfrom, e->internal, e->id, e->auth, e->msa);
	return n < 0 ? 0 : (size_t)n >= outlen ? outlen - 1 : (size_t)n;
}

/* the relays of one class (0 trusted, 1 untrusted, 2 internal, 3 external), joined by spaces */
static char *relays_joined(const struct eval_relays *rl, int cls)
{
	size_t cap = 256 + rl->n * 1600, o = 0;
	char *out = malloc(cap);
	if (!out) abort();
	out[0] = '\0';
	for (size_t i = 0; i < rl->n; i++) {
		const struct eval_relay *e = &rl->relay[i];
		int in = cls == 0 ? e->trusted : cls == 1 ? !e->trusted : cls == 2 ? e->internal : !e->internal;
		if (!in) continue;
		if (o) out[o++] = ' ';
		o += relay_string(e, out + o, cap - o);
	}
	return out;
}

/* ALL-TRUSTED and friends: the header fields (as "Name: value\n") from
 * Received field index start (inclusive) to end (inclusive), -1 = open */
static char *fields_in_range(struct eval_msg *m, int hop, int start, int end)
{
	size_t cap = 1, o = 0;
	for (size_t i = 0; i < m->in->nheaders && cap < MAX_JOINED; i++)
		cap += strlen(m->in->headers[i].name) + strlen(hdr_value(&m->in->headers[i])) + 3;
	if (cap > MAX_JOINED) cap = MAX_JOINED;
	char *out = malloc(cap);
	if (!out) abort();
	out[0] = '\0';
	int idx = hop ? 0 : -1;        /* the client hop stands for the Received field our MTA adds */
	{
		for (size_t i = 0; i < m->in->nheaders; i++) {
			const struct rules_header *h = &m->in->headers[i];
			if (strcasecmp(h->name, "Received") == 0) idx++;
			int inside = (start < 0 || start <= idx) && (end < 0 || idx < end);
			int last = end >= 0 && idx == end;
			if (!inside && !last) continue;
			int w = snprintf(out + o, cap - o, "%s: %s\n", h->name, hdr_value(h));
			if (w < 0 || (size_t)w >= cap - o) { o = cap - 1; break; }   /* full: cut */
			o += (size_t)w;
			if (last) break;
		}
	}
	if (o && out[o - 1] == '\n') out[--o] = '\0';   /* scan.c ends each value with a newline */
	return out;
}

static const char *const pseudo_names[] = { "X-Spam-Relays-Trusted", "X-Spam-Relays-Untrusted",
	"X-Spam-Relays-Internal", "X-Spam-Relays-External", "ALL-TRUSTED", "ALL-UNTRUSTED",
	"ALL-INTERNAL", "ALL-EXTERNAL", NULL };

static void relay_pseudo(struct eval_msg *m, void (*add)(void *arg, const char *name, const char *value), void *arg)
{
	const struct eval_relays *rl = eval_relays(m);
	for (int cls = 0; cls < 4; cls++) {
		char *v = relays_joined(rl, cls);
		add(arg, pseudo_names[cls], v);
		free(v);
	}
	int hop = rl->n && rl->relay[0].client_hop;
	int lt = rl->last_trusted_rcvd + 1, li = rl->last_internal_rcvd + 1;
	char *v;
	v = fields_in_range(m, hop, -1, lt);
	if (*v) add(arg, "ALL-TRUSTED", v);
	free(v);
	v = fields_in_range(m, hop, -1, li);
	if (*v) add(arg, "ALL-INTERNAL", v);
	free(v);
	v = fields_in_range(m, hop, lt, -1);
	if (*v) add(arg, "ALL-UNTRUSTED", v);
	free(v);
	v = fields_in_range(m, hop, li, -1);
	if (*v) add(arg, "ALL-EXTERNAL", v);
	free(v);
}

/* --- eval: functions over the relays (RelayEval) ------------------------------------ */

static size_t n_untrusted(const struct eval_relays *rl) { return rl->n - rl->ntrusted; }

/* the i-th untrusted relay, newest first */
static const struct eval_relay *untrusted_at(const struct eval_relays *rl, size_t i)
{
	return i < n_untrusted(rl) ? &rl->relay[rl->ntrusted + i] : NULL;
}

static double all_trusted(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	const struct eval_relays *rl = eval_relays(m);
	return rl->ntrusted && !n_untrusted(rl) && !rl->unparseable;
}

static double no_relays(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	const struct eval_relays *rl = eval_relays(m);
	return !rl->n && !rl->unparseable;
}

static double relays_unparseable(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	return eval_relays(m)->unparseable ? 1 : 0;
}

/* the oldest untrusted relay has a dotted, public reverse name */
static double sender_no_reverse(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	const struct eval_relays *rl = eval_relays(m);
	size_t nu = n_untrusted(rl);
	if (!nu) return 0;
	const struct eval_relay *e = untrusted_at(rl, nu - 1);
	return strchr(e->rdns, '.') && !e->ip_private;
}

static int is_ipv4(struct rxm *x, const char *s) { return rxs(x, RX_IS_IP4, s); }

static struct rxm rxm_of(struct eval_msg *m)
{
	struct rxm x = { .md = m->md, .mctx = m->rs ? m->rs->mctx : NULL };
	return x;
}

/* an untrusted relay whose HELO is a public IPv4 address outside the /24 of its address */
static double helo_ip_mismatch(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	const struct eval_relays *rl = eval_relays(m);
	struct rxm x = rxm_of(m);
	for (size_t i = 0; i < n_untrusted(rl); i++) {
		const struct eval_relay *e = untrusted_at(rl, i);
		if (!is_ipv4(&x, e->helo) || ip_is_private(e->helo)) continue;
		if (!is_ipv4(&x, e->ip) || ip_is_private(e->ip) || strcmp(e->helo, e->ip) == 0) continue;
		const char *dot = strrchr(e->helo, '.');
		size_t prefix = (size_t)(dot - e->helo) + 1;      /* "a.b.c." */
		if (strncmp(e->ip, e->helo, prefix) != 0) return 1;
	}
	return 0;
}

static double numeric_helo(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	const struct eval_relays *rl = eval_relays(m);
	struct rxm x = rxm_of(m);
	char *un = relays_joined(rl, 1);
	int hit = 0;
	/* SpamAssassin means to skip private addresses here, but its "local
	 * $1" hides the capture from that test: any IPv4 HELO hits */
	if (*un && rxs(&x, RX_NUMERIC_HELO, un)) hit = 1;
	free(un);
	return hit;
}

/* a HELO claiming a big freemail/ISP domain from a host the receiver found no reverse name for */
static double no_rdns_dotcom_helo(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	const struct eval_relays *rl = eval_relays(m);
	struct rxm x = rxm_of(m);
	int hit = 0;
	for (size_t i = 0; i < n_untrusted(rl); i++) {
		const struct eval_relay *e = untrusted_at(rl, i);
		if (e->ip_private) continue;
		hit = 0;         /* as SpamAssassin: the last public relay decides */
		if (rxs(&x, RX_DOTCOM_HELO, e->helo) && e->no_reverse_dns) hit = 1;
	}
	return hit;
}

/* SpamAssassin's rough "domain of a host name" (RelayEval::hostname_to_domain) */
static void host_domain(const char *host, char *out, size_t outlen)
{
	char lc[256];
	size_t l = strlen(host);
	if (l >= sizeof lc) l = sizeof lc - 1;
	for (size_t i = 0; i < l; i++) lc[i] = (char)tolower((unsigned char)host[i]);
	lc[l] = '\0';
	int alpha = 0;
	for (size_t i = 0; i < l; i++) if (isalpha((unsigned char)lc[i])) alpha = 1;
	if (!alpha) { snprintf(out, outlen, "%s", lc); return; }
	/* Perl's split drops trailing empty fields */
	while (l && lc[l - 1] == '.') lc[--l] = '\0';
	/* split at dots, keeping empty fields between them as Perl does */
	const char *parts[128];
	size_t np = 0;
	char tmp[256];
	memcpy(tmp, lc, l + 1);
	parts[np++] = tmp;
	for (char *q = tmp; *q && np < 128; q++)
		if (*q == '.') { *q = '\0'; parts[np++] = q + 1; }
	const char *last = parts[np - 1];
	int tld3 = strlen(last) >= 3 && !strpbrk(last, " \t\n\r\f\v");
	/* /(?:\S{3,}|ie|fr|de)/ is unanchored: any run of 3 non-spaces, or those two-letter strings inside */
	if (!tld3 && (strstr(last, "ie") || strstr(last, "fr") || strstr(last, "de"))) tld3 = 1;
	if (np > 1 && tld3) snprintf(out, outlen, "%s.%s", parts[np - 2], parts[np - 1]);
	else if (np > 2) snprintf(out, outlen, "%s.%s.%s", parts[np - 3], parts[np - 2], parts[np - 1]);
	else snprintf(out, outlen, "%s", lc);
}

struct forged { int mismatch_from, mismatch_ip_helo; };

static struct forged forged_received(struct eval_msg *m)
{
	struct forged f = { 0, 0 };
	const struct eval_relays *rl = eval_relays(m);
	struct rxm x = rxm_of(m);
	size_t nu = n_untrusted(rl);
	char prev_from[256] = "";
	int prev_set = 0;
	for (size_t i = 0; i < nu; i++) {
		const struct eval_relay *e = untrusted_at(rl, i);
		char by[256], from[256], helo[256];
		host_domain(e->by, by, sizeof by);
		host_domain(e->rdns, from, sizeof from);
		host_domain(e->helo, helo, sizeof helo);
		int from_set = 1;
		if (rxs(&x, RX_HOSTNAME_LIKE, by)) {
			if ((strcmp(from, "localhost") == 0 || strcmp(from, "localhost.localdomain") == 0) && strcmp(e->ip, "127.0.0.1") == 0)
				from_set = 0;
			if (rxs(&x, RX_DOTQUAD, helo) && rxs(&x, RX_DOTQUAD, e->ip) && strcmp(helo, e->ip) != 0) {
				/* the first two octets differ, and the HELO address is public */
				const char *h2 = strchr(strchr(helo, '.') + 1, '.'), *f2 = strchr(strchr(e->ip, '.') + 1, '.');
				size_t hl = (size_t)(h2 - helo), fl = (size_t)(f2 - e->ip);
				if ((hl != fl || strncmp(helo, e->ip, hl) != 0) && !ip_is_private(helo)) f.mismatch_ip_helo++;
			}
			if (i > 0 && prev_set && rxs(&x, RX_HOSTNAME_LIKE, prev_from) && strcmp(by, prev_from) != 0 &&
			    !(strcmp(by, "msn.com") == 0 && strcmp(prev_from, "hotmail.com") == 0))
				f.mismatch_from++;
		}
		snprintf(prev_from, sizeof prev_from, "%s", from);
		prev_set = from_set;
	}
	return f;
}

static double forged_received_trail(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	return forged_received(m).mismatch_from > 1;
}

static double forged_received_ip_helo(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	return forged_received(m).mismatch_ip_helo > 0;
}

/* --- eval: functions over the Received text (HeaderEval) ------------------------------ */

/* all fields of a name joined by "\n" (malloc'd); *n the count */
static char *all_of(struct eval_msg *m, const char *name, size_t *n)
{
	size_t cap = 1;
	for (size_t i = 0; i < m->in->nheaders && cap < MAX_JOINED; i++)
		if (strcasecmp(m->in->headers[i].name, name) == 0) cap += strlen(hdr_value(&m->in->headers[i])) + 1;
	if (cap > MAX_JOINED) cap = MAX_JOINED;
	char *out = malloc(cap);
	if (!out) abort();
	size_t found = eval_header_all(m, name, out, cap);
	if (n) *n = found;
	return out;
}

static void squeeze_spaces(char *s)
{
	char *o = s;
	for (char *p = s; *p; p++) {
		if (isspace((unsigned char)*p)) {
			if (o == s || o[-1] != ' ') *o++ = ' ';
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
}

static void from_addr(struct eval_msg *m, char *out, size_t outlen)
{
	const char *f = eval_header_first(m, "From");
	out[0] = '\0';
	if (!f || rules_addr_of(f, out, outlen) < 0) out[0] = '\0';
}

static double fake_aol_relay(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	char *rcvd = all_of(m, "Received", NULL);
	squeeze_spaces(rcvd);
	struct rxm x = rxm_of(m);
	int hit = rxs(&x, RX_AOL_RLY, rcvd) && !rxs(&x, RX_AOL_OK1, rcvd) && !rxs(&x, RX_AOL_OK2, rcvd);
	free(rcvd);
	return hit;
}

static int gated_hdr_remover(struct eval_msg *m)
{
	struct rxm x = rxm_of(m);
	const char *ml = eval_header_first(m, "Mailing-List");
	if (ml) {
		char *all_ml = all_of(m, "Mailing-List", NULL);
		int ez = rxs(&x, RX_EZMLM, all_ml);
		free(all_ml);
		if (ez) {
			char *dlto = all_of(m, "Delivered-To", NULL), *rcvd = all_of(m, "Received", NULL);
			int hit = rxs(&x, RX_DLTO_ML, dlto) && rxs(&x, RX_QMAIL_INV, rcvd);
			free(dlto);
			free(rcvd);
			if (hit) return 1;
		}
	}
	size_t n;
	char *rcvd = all_of(m, "Received", &n);
	int hit = !n || rxs(&x, RX_MSN_GROUPS, rcvd);   /* no Received fields at all: gated */
	free(rcvd);
	return hit;
}

static double gated_through(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	return gated_hdr_remover(m);
}

/* 1: From claims hotmail, no hotmail Received; 2: a Received HELO'd as hotmail, not from it */
static int hotmail_check(struct eval_msg *m)
{
	struct rxm x = rxm_of(m);
	char *rcvd = all_of(m, "Received", NULL);
	squeeze_spaces(rcvd);
	int res = 0;
	if (rxs(&x, RX_HM_PICKUP, rcvd)) goto out;
	{   /* Microsoft hands Hotmail mail straight to MSN Groups */
		char *to = all_of(m, "To", NULL);
		int groups = rxs(&x, RX_MSNG_TO, to) && rxs(&x, RX_MSNG_RCVD, rcvd);
		free(to);
		if (groups) goto out;
	}
	const char *xip = eval_header_first(m, "X-Originating-Ip"), *org = eval_header_first(m, "X-OriginatorOrg");
	int ip = xip && rxs(&x, RX_FIND_IP, xip);
	int orig = org && rxs(&x, RX_HM_ORIG, org);
	if (gated_hdr_remover(m)) goto out;
	if ((ip && (rxs(&x, RX_HM1, rcvd) || rxs(&x, RX_HM4, rcvd) || rxs(&x, RX_HM5, rcvd) || rxs(&x, RX_HM6, rcvd))) ||
	    (orig && (rxs(&x, RX_HM2, rcvd) || rxs(&x, RX_HM3, rcvd))))
		goto out;
	if (rxs(&x, RX_HM_HELO, rcvd)) res = 2;
	else {
		char from[320];
		from_addr(m, from, sizeof from);
		if (rxs(&x, RX_FROM_HOTMAIL, from)) res = 1;
	}
out:
	free(rcvd);
	return res;
}

static double forged_hotmail(struct eval_msg *m, const struct rule *r) { (void)r; return hotmail_check(m) == 2; }
static double no_hotmail(struct eval_msg *m, const struct rule *r) { (void)r; return hotmail_check(m) == 1; }

static double forged_eudoramail(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	struct rxm x = rxm_of(m);
	char from[320];
	from_addr(m, from, sizeof from);
	if (!rxs(&x, RX_FROM_EUDORA, from)) return 0;
	const char *xip = eval_header_first(m, "X-Sender-Ip");
	int ip = xip && rxs(&x, RX_FIND_IP, xip);
	if (gated_hdr_remover(m)) return 0;
	char *rcvd = all_of(m, "Received", NULL);
	squeeze_spaces(rcvd);
	int ok = rxs(&x, RX_EUD_BY, rcvd) && ip;
	free(rcvd);
	return !ok;
}

static double forged_yahoo(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	struct rxm x = rxm_of(m);
	char from[320];
	from_addr(m, from, sizeof from);
	if (!rxs(&x, RX_FROM_YAHOO, from)) return 0;
	char *rcvd = all_of(m, "Received", NULL);
	const char *rf = eval_header_first(m, "Resent-From"), *rt = eval_header_first(m, "Resent-To");
	if (rf && *rf && rt && *rt) {
		char *xr = all_of(m, "X-Received", NULL);
		if (*xr) { free(rcvd); rcvd = xr; } else free(xr);
	}
	squeeze_spaces(rcvd);
	int hit = 1;
	if (gated_hdr_remover(m)) hit = 0;
	else {
		const struct eval_relays *rl = eval_relays(m);
		char *tr = relays_joined(rl, 0), *un = relays_joined(rl, 1);
		if (rxs(&x, RX_YH_TR, tr) || rxs(&x, RX_YH_UN, un)) hit = 0;
		free(tr);
		free(un);
	}
	if (hit && (rxs(&x, RX_YH1, rcvd) || rxs(&x, RX_YH2, rcvd) || rxs(&x, RX_YH3, rcvd) || rxs(&x, RX_YH4, rcvd) ||
	            (rxs(&x, RX_YH5, rcvd) && rxs(&x, RX_YH5_FROM, from)) || rxs(&x, RX_YH6, rcvd)))
		hit = 0;
	free(rcvd);
	return hit;
}

static double forged_juno(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	struct rxm x = rxm_of(m);
	char from[320];
	from_addr(m, from, sizeof from);
	if (!rxs(&x, RX_FROM_JUNO, from)) return 0;
	if (gated_hdr_remover(m)) return 0;
	char *xorig = all_of(m, "X-Originating-IP", NULL), *xmailer = all_of(m, "X-Mailer", NULL),
	     *rcvd = all_of(m, "Received", NULL);
	int hit = 0;
	if (*xorig) {
		if (!rxs(&x, RX_JU1, rcvd) && !rxs(&x, RX_JU2, rcvd)) hit = 1;
		else if (!strstr(xmailer, "Juno ")) hit = 1;
	} else {
		if (rxs(&x, RX_JU3, rcvd)) { if (!rxs(&x, RX_JU4, xmailer)) hit = 1; }
		else if (rxs(&x, RX_JU5, rcvd)) { if (!rxs(&x, RX_JU6, xmailer)) hit = 1; }
		else hit = 1;
		if (!hit && !rxs(&x, RX_FIND_IP, xorig)) hit = 1;
	}
	free(xorig);
	free(xmailer);
	free(rcvd);
	return hit;
}

static double forged_gmail(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	struct rxm x = rxm_of(m);
	char from[320];
	from_addr(m, from, sizeof from);
	if (!rxs(&x, RX_FROM_GMAIL, from)) return 0;
	char *xgms = all_of(m, "X-Gm-Message-State", NULL), *xss = all_of(m, "X-Google-Smtp-Source", NULL),
	     *xr = all_of(m, "X-Received", NULL), *rcvd = all_of(m, "Received", NULL);
	int hit = 1;
	if (rxs(&x, RX_GM1, xr) || rxs(&x, RX_GM2, xr) || rxs(&x, RX_GM3, rcvd)) hit = 0;
	else if (strlen(xgms) >= 60 && strlen(xss) >= 60) hit = 0;
	free(xgms);
	free(xss);
	free(xr);
	free(rcvd);
	return hit;
}

/* --- dates: check_for_shifted_date -------------------------------------------------- */

static const struct { const char *name; int off; } tz_names[] = {
	{ "UT", 0 }, { "UTC", 0 }, { "GMT", 0 }, { "NDT", -230 }, { "AST", -400 }, { "ADT", -300 }, { "NST", -330 },
	{ "EST", -500 }, { "EDT", -400 }, { "CST", -600 }, { "CDT", -500 }, { "MST", -700 }, { "MDT", -600 },
	{ "PST", -800 }, { "PDT", -700 }, { "HST", -1000 }, { "AKST", -900 }, { "AKDT", -800 }, { "HADT", -900 },
	{ "HAST", -1000 }, { "BST", 100 }, { "IST", 100 }, { "WET", 0 }, { "WEST", 100 }, { "CET", 100 },
	{ "CEST", 200 }, { "EET", 200 }, { "EEST", 300 }, { "MSK", 300 }, { "MSD", 400 }, { "MET", 100 },
	{ "MEZ", 100 }, { "MEST", 200 }, { "MESZ", 200 }, { "BRST", -200 }, { "BRT", -300 }, { "AEST", 1000 },
	{ "AEDT", 1100 }, { "ACST", 930 }, { "ACDT", 1030 }, { "AWST", 800 }, { "NZST", 1200 }, { "NZDT", 1300 },
	{ "JST", 900 }, { "KST", 900 }, { "HKT", 800 }, { "SGT", 800 }, { "PHT", 800 }, { "IDT", 300 },
};

static long long days_from_civil(long long y, unsigned mo, unsigned d)
{
	y -= mo <= 2;
	long long era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (long long)doe - 719468;
}

static int month_of(const char *s)
{
	static const char *const mon[] = { "jan","feb","mar","apr","may","jun","jul","aug","sep","oct","nov","dec" };
	for (int i = 0; i < 12; i++) if (strncasecmp(s, mon[i], 3) == 0) return i + 1;
	return 0;
}

/* cut the last match out of buf, leaving one space */
static void cut_match(struct rxm *x, char *buf)
{
	PCRE2_SIZE *ov = pcre2_get_ovector_pointer(x->md);
	size_t a = ov[0], b = ov[1];
	buf[a] = ' ';
	memmove(buf + a + 1, buf + b, strlen(buf + b) + 1);
}

/* as SpamAssassin's parse_rfc822_date: seconds since the epoch, or -1 */
static long long parse_date(struct rxm *x, const char *date)
{
	char buf[512];
	size_t o = 0;
	buf[o++] = ' ';
	for (const char *p = date; *p && o + 2 < sizeof buf; p++) {
		if (*p == ',') { while (p[1] == ' ') p++; buf[o++] = ' '; continue; }
		if (isspace((unsigned char)*p)) { if (buf[o - 1] != ' ') buf[o++] = ' '; continue; }
		buf[o++] = *p;
	}
	if (buf[o - 1] != ' ') buf[o++] = ' ';
	buf[o] = '\0';
	char a[16], b[16], c[16];
	long long yyyy;
	int dd, mon;
	if (rxs(x, RX_D_DATE1, buf) || rxs(x, RX_D_DATE3, buf)) {
		cap(x, 1, a, sizeof a); cap(x, 2, b, sizeof b); cap(x, 3, c, sizeof c);
		dd = atoi(a); mon = month_of(b); yyyy = atoll(c);
	} else if (rxs(x, RX_D_DATE2, buf)) {
		cap(x, 1, b, sizeof b); cap(x, 2, a, sizeof a); cap(x, 3, c, sizeof c);
		dd = atoi(a); mon = month_of(b); yyyy = atoll(c);
	} else {
		return -1;
	}
	cut_match(x, buf);
	if (strlen(c) == 2 && yyyy < 50) yyyy += 2000;
	else if (strlen(c) != 4) yyyy += 1900;
	int hh = 0, mm = 0, ss = 0;
	if (rxs(x, RX_D_TIME, buf)) {
		cap(x, 1, a, sizeof a); hh = atoi(a);
		cap(x, 2, a, sizeof a); mm = atoi(a);
		cap(x, 4, a, sizeof a); ss = atoi(a);
		cut_match(x, buf);
	}
	int tz = 0;
	if (rxs(x, RX_D_TZNUM, buf)) {
		cap(x, 1, a, sizeof a);
		tz = atoi(a);
	} else if (rxs(x, RX_D_TZNAME, buf)) {
		cap(x, 1, a, sizeof a);
		for (size_t i = 0; i < sizeof tz_names / sizeof *tz_names; i++)
			if (strcmp(tz_names[i].name, a) == 0) { tz = tz_names[i].off; break; }
	}
	if (ss > 59) ss = 59;
	if (mm > 59) mm = 59;
	if (hh > 23) hh = 23;
	int max_dd = 31;
	if (mon == 4 || mon == 6 || mon == 9 || mon == 11) max_dd = 30;
	else if (mon == 2) max_dd = (!(yyyy % 4) && ((yyyy % 100) || !(yyyy % 400))) ? 29 : 28;
	if (dd > max_dd) { dd = 1; if (++mon > 12) { mon = 1; yyyy++; } }
	if (yyyy > 2037) yyyy = 2037;
	else if (yyyy < 1970) yyyy = 1970;
	if (!mon || !dd) return -1;             /* Time::Local refuses these */
	long long t = days_from_civil(yyyy, (unsigned)mon, (unsigned)dd) * 86400 + hh * 3600 + mm * 60 + ss;
	int atz = tz < 0 ? -tz : tz;
	long long off = ((atz / 100) * 60 + atz % 100) * 60;
	if (tz < 0) t += off;
	else if (t < off) t = 0;
	else t -= off;
	return t;
}

/* Date (or Resent-Date) minus the Received dates: the difference of smallest size */
static int date_diff(struct eval_msg *m, long long *diff)
{
	struct rxm x = rxm_of(m);
	long long date = -1;
	static const char *const names[] = { "Resent-Date", "Date" };
	for (int k = 0; k < 2 && date < 0; k++)
		for (size_t i = 0; i < m->in->nheaders && date < 0; i++)
			if (strcasecmp(m->in->headers[i].name, names[k]) == 0 && *hdr_value(&m->in->headers[i]))
				date = parse_date(&x, hdr_value(&m->in->headers[i]));
	*diff = 0;
	if (date < 0) return 0;
	const char *rc[MAX_RELAYS];
	size_t n = 0;
	for (size_t i = 0; i < m->in->nheaders && n < MAX_RELAYS; i++) {
		if (strcasecmp(m->in->headers[i].name, "Received") != 0) continue;
		const char *v = hdr_value(&m->in->headers[i]);
		const char *p = v;
		while (*p && isspace((unsigned char)*p)) p++;
		if (*p) rc[n++] = v;
	}
	if (!n) return 0;
	/* a fetchmail handover on top is the local delivery, not a relay */
	size_t first = 0;
	if (rxs(&x, RX_FETCH_LOCAL, rc[0]) || rxs(&x, RX_QMAIL_UID, rc[0])) {
		if (n > 1 && rxs(&x, RX_FETCHMAIL, rc[1])) first = 2;
	}
	long long diffs[MAX_RELAYS];
	size_t nd = 0;
	for (size_t i = first; i < n; i++) {
		if (!rxs(&x, RX_RCVD_DATE, rc[i])) continue;
		char d[128];
		cap(&x, 1, d, sizeof d);
		long long t = parse_date(&x, d);
		if (t >= 0) diffs[nd++] = date - t;
	}
	if (!nd) return 0;
	if (nd > 1 && diffs[nd - 1] == 0) nd--;
	long long best = diffs[0];
	for (size_t i = 1; i < nd; i++) {
		long long a = diffs[i] < 0 ? -diffs[i] : diffs[i], b = best < 0 ? -best : best;
		if (a < b) best = diffs[i];
	}
	*diff = best;
	return 1;
}

static int shifted_check(struct ruleset *rs, struct rule *r, char *why, size_t whylen)
{
	(void)rs;
	for (unsigned i = 0; i < 2; i++) {
		const char *a = eval_arg(r, i);
		char *end;
		if (strcmp(a, "undef") == 0) continue;
		strtod(a, &end);
		if (end == a || *end) { snprintf(why, whylen, "argument %u is not a number or 'undef': %.40s", i + 1, a); return -1; }
	}
	return 0;
}

static double shifted_date(struct eval_msg *m, const struct rule *r)
{
	long long d;
	date_diff(m, &d);
	const char *lo = eval_arg(r, 0), *hi = eval_arg(r, 1);
	return (strcmp(lo, "undef") == 0 || (double)d >= 3600 * eval_arg_num(r, 0, 0)) &&
	       (strcmp(hi, "undef") == 0 || (double)d < 3600 * eval_arg_num(r, 1, 0));
}

/* --- check_mailfrom_matches_rcvd -------------------------------------------------- */

static int us_state(const char *s)
{
	static const char states[] = " ak al ar az ca co ct dc de fl ga gu hi ia id il in ks ky la ma md me mi mn mo ms mt nc"
		" nd ne nh nj nm nv ny oh ok or pa pr ri sc sd tn tx ut va vi vt wa wi wv wy ";
	if (strlen(s) != 2) return 0;
	char k[5] = { ' ', s[0], s[1], ' ', '\0' };
	return strstr(states, k) != NULL;
}

/* the registered domain of a host name (RegistryBoundaries::split_domain) */
static void reg_domain(const struct relay_conf *c, const char *host, char *out, size_t outlen)
{
	char d[256];
	size_t o = 0;
	for (const char *p = host; *p && o + 1 < sizeof d; p++) {
		char ch = (char)tolower((unsigned char)*p);
		if (ch == '.' && (o == 0 || d[o - 1] == '.')) continue;
		d[o++] = ch;
	}
	while (o && d[o - 1] == '.') o--;
	d[o] = '\0';
	const char *parts[128];
	size_t np = 0;
	if (o) {
		parts[np++] = d;
		for (size_t i = 0; i < o && np < 128; i++) if (d[i] == '.') parts[np++] = d + i + 1;
	}
	size_t first = 0;
	while (np - first > 1) {
		const char *rest = parts[first];
		size_t left = np - first;
		if (left == 2 && c && strset_has(&c->tld2, rest)) break;
		if (left == 3) {
			char p1[64];
			const char *e1 = strchr(parts[first + 1], '.');
			size_t l1 = e1 ? (size_t)(e1 - parts[first + 1]) : 0;
			if (strcmp(parts[first + 2], "us") == 0) {
				if (l1 < sizeof p1) { memcpy(p1, parts[first + 1], l1); p1[l1] = '\0'; if (us_state(p1)) break; }
			} else if (c && strset_has(&c->tld3, rest)) break;
		}
		first++;
	}
	if (first > 0 && np) first--;
	snprintf(out, outlen, "%s", np ? parts[first] : "");
}

/* the first field of a name: its address, 1 if the field exists */
static int first_addr(struct eval_msg *m, const char *name, char *out, size_t outlen)
{
	const char *v = eval_header_first(m, name);
	out[0] = '\0';
	if (!v) return 0;
	if (rules_addr_of(v, out, outlen) < 0) out[0] = '\0';
	return 1;
}

/* a Received field comes before the first field of that name */
static int after_received(struct eval_msg *m, const char *name)
{
	int seen = 0;
	for (size_t i = 0; i < m->in->nheaders; i++) {
		if (strcasecmp(m->in->headers[i].name, "Received") == 0) seen = 1;
		else if (strcasecmp(m->in->headers[i].name, name) == 0) return seen;
	}
	return 0;
}

static void envelope_from(struct eval_msg *m, char *out, size_t outlen)
{
	out[0] = '\0';
	if (m->in->mail_from && *m->in->mail_from) { snprintf(out, outlen, "%s", m->in->mail_from); return; }
	/* without the SMTP envelope, as SpamAssassin guesses it
	 * (PerMsgStatus::get_envelope_from): the envelope sender the last
	 * untrusted (else the first trusted) relay recorded, else the
	 * X-Envelope-From, Envelope-Sender or Return-Path field when no
	 * Received field precedes it */
	const struct eval_relays *rl = eval_relays(m);
	const struct eval_relay *hop = n_untrusted(rl) ? untrusted_at(rl, 0) : rl->n ? &rl->relay[rl->n - 1] : NULL;
	if (hop && hop->has_envfrom && (strchr(hop->envfrom, '@') > hop->envfrom || !hop->envfrom[0])) {
		snprintf(out, outlen, "%s", hop->envfrom);
		return;
	}
	char a[320];
	if (first_addr(m, "X-Sender", a, sizeof a) && strchr(a, '@')) {
		for (size_t i = 0; i < m->in->nheaders; i++)
			if (strcasecmp(m->in->headers[i].name, "Received") == 0 && strstr(hdr_value(&m->in->headers[i]), "(fetchmail"))
				return;     /* fetchmail copies X-Sender: no envelope can be trusted */
	}
	if (first_addr(m, "X-Envelope-From", a, sizeof a)) {
		if (!after_received(m, "X-Envelope-From")) snprintf(out, outlen, "%s", a);
		return;
	}
	if (first_addr(m, "Envelope-Sender", a, sizeof a) && !after_received(m, "Envelope-Sender")) {
		snprintf(out, outlen, "%s", a);
		return;
	}
	if (first_addr(m, "Return-Path", a, sizeof a) && !after_received(m, "Return-Path"))
		snprintf(out, outlen, "%s", a);
}

static int mailfrom_check(struct ruleset *rs, struct rule *r, char *why, size_t whylen)
{
	(void)r; (void)why; (void)whylen;
	conf_prepare(rs);
	return 0;
}

static double mailfrom_matches_rcvd(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	char sender[320];
	envelope_from(m, sender, sizeof sender);
	const char *at = strrchr(sender, '@');
	if (!at || !strchr(at + 1, '.') || at[1] == '.' || !at[1] || sender[strlen(sender) - 1] == '.') return 0;
	const struct relay_conf *c = m->rs ? m->rs->evconf[EVF_RELAYS] : NULL;
	char adom[256];
	reg_domain(c, at + 1, adom, sizeof adom);
	const struct eval_relays *rl = eval_relays(m);
	size_t from = 0, to = 0;
	if (n_untrusted(rl)) { from = rl->ntrusted; to = from + 1; }
	else if (rl->ntrusted) { from = 0; to = rl->ntrusted; }
	for (size_t i = from; i < to; i++) {
		if (!rl->relay[i].rdns[0]) continue;
		char rdom[256];
		reg_domain(c, rl->relay[i].rdns, rdom, sizeof rdom);
		if (strcmp(adom, rdom) == 0) return 1;
	}
	return 0;
}

/* --- VBounce ----------------------------------------------------------------------- */

static int bounce_conf_has(const struct eval_msg *m)
{
	const struct relay_conf *c = m->rs ? m->rs->evconf[EVF_RELAYS] : NULL;
	return c && c->bounce.n;
}

static double have_bounce_relays(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	return bounce_conf_has(m);
}

/* a glob with * and ? only, case-insensitive, iterative */
static int glob_match(const char *pat, const char *s)
{
	const char *star = NULL, *back = NULL;
	while (*s) {
		if (*pat == '?' || (*pat && *pat != '*' && tolower((unsigned char)*pat) == tolower((unsigned char)*s))) { pat++; s++; continue; }
		if (*pat == '*') { star = pat++; back = s; continue; }
		if (star) { pat = star + 1; s = ++back; continue; }
		return 0;
	}
	while (*pat == '*') pat++;
	return !*pat;
}

static int relay_listed(const struct relay_conf *c, const char *host, size_t len)
{
	char h[256];
	if (len >= sizeof h) return 0;
	for (size_t i = 0; i < len; i++) h[i] = (char)tolower((unsigned char)host[i]);
	h[len] = '\0';
	for (size_t i = 0; i < c->bounce.n; i++)
		if (glob_match(c->bounce.v[i], h)) return 1;
	return 0;
}

/* the "a.b" words between whitespace of a Received line */
static int received_line_listed(const struct relay_conf *c, const char *line, size_t len)
{
	size_t i = 0;
	while (i < len) {
		if (!isspace((unsigned char)line[i])) { i++; continue; }
		size_t s = i + 1, e = s;
		while (e < len && !isspace((unsigned char)line[e])) e++;
		if (e < len && e > s) {
			const char *dot = memchr(line + s, '.', e - s);
			if (dot && dot > line + s && dot < line + e - 1 && relay_listed(c, line + s, e - s)) return 1;
		}
		i = e;
	}
	return 0;
}

static double welcomelist_bounce_relays(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	if (!bounce_conf_has(m)) return 0;
	const struct relay_conf *c = m->rs->evconf[EVF_RELAYS];
	struct rxm x = rxm_of(m);
	size_t budget = MAX_SCAN_BODY;
	/* the text body, line by line */
	for (size_t i = 0; i < m->in->nbody && budget; i++) {
		size_t l = m->in->body_len[i];
		if (l > budget) l = budget;
		budget -= l;
		char line[2048];
		if (l >= sizeof line) l = sizeof line - 1;
		memcpy(line, m->in->body[i], l);
		line[l] = '\0';
		if (rxs(&x, RX_BOUNCE_RCVD, line) && received_line_listed(c, line, l)) return 1;
	}
	/* then the attached messages: every Received field of the raw body,
	 * continuation lines joined */
	if (!m->in->full) return 0;
	const char *body = m->in->full, *end = m->in->full + m->in->full_len;
	const char *sep = NULL;
	for (const char *p = body; p + 1 < end; p++) {
		if (p[0] == '\n' && (p[1] == '\n' || (p[1] == '\r' && p + 2 < end && p[2] == '\n'))) { sep = p + 1; break; }
	}
	if (!sep) return 0;
	if ((size_t)(end - sep) > MAX_SCAN_BODY) end = sep + MAX_SCAN_BODY;
	char field[4096];
	size_t fl = 0;
	int in_rcvd = 0;
	for (const char *p = sep; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		size_t ll = (size_t)(le - p);
		if (ll && p[ll - 1] == '\r') ll--;
		if (ll && (p[0] == ' ' || p[0] == '\t')) {
			if (in_rcvd && fl + ll < sizeof field) { memcpy(field + fl, p, ll); fl += ll; }
		} else {
			if (in_rcvd) { field[fl] = '\0'; if (received_line_listed(c, field, fl)) return 1; }
			char line[64];
			size_t cl = ll < sizeof line - 1 ? ll : sizeof line - 1;
			memcpy(line, p, cl);
			line[cl] = '\0';
			in_rcvd = rxs(&x, RX_BOUNCE_RCVD, line);
			fl = ll < sizeof field - 1 ? ll : sizeof field - 1;
			memcpy(field, p, fl);
		}
		p = nl ? nl + 1 : end;
	}
	if (in_rcvd) { field[fl] = '\0'; if (received_line_listed(c, field, fl)) return 1; }
	return 0;
}

/* --- the module ---------------------------------------------------------------------- */

static const struct eval_def defs[] = {
	{ "check_all_trusted", all_trusted, 0, 0, NULL, NULL, 0 },
	{ "check_no_relays", no_relays, 0, 0, NULL, NULL, 0 },
	{ "check_relays_unparseable", relays_unparseable, 0, 0, NULL, NULL, 0 },
	{ "check_for_sender_no_reverse", sender_no_reverse, 0, 0, NULL, NULL, 0 },
	{ "helo_ip_mismatch", helo_ip_mismatch, 0, 0, NULL, NULL, 0 },
	{ "check_for_numeric_helo", numeric_helo, 0, 0, NULL, NULL, 0 },
	{ "check_for_no_rdns_dotcom_helo", no_rdns_dotcom_helo, 0, 0, NULL, NULL, 0 },
	{ "check_for_forged_received_trail", forged_received_trail, 0, 0, NULL, NULL, 0 },
	{ "check_for_forged_received_ip_helo", forged_received_ip_helo, 0, 0, NULL, NULL, 0 },
	{ "check_for_fake_aol_relay_in_rcvd", fake_aol_relay, 0, 0, NULL, NULL, 0 },
	{ "gated_through_received_hdr_remover", gated_through, 0, 0, NULL, NULL, 0 },
	{ "check_for_forged_hotmail_received_headers", forged_hotmail, 0, 0, NULL, NULL, 0 },
	{ "check_for_no_hotmail_received_headers", no_hotmail, 0, 0, NULL, NULL, 0 },
	{ "check_for_forged_eudoramail_received_headers", forged_eudoramail, 0, 0, NULL, NULL, 0 },
	{ "check_for_forged_yahoo_received_headers", forged_yahoo, 0, 0, NULL, NULL, 0 },
	{ "check_for_forged_juno_received_headers", forged_juno, 0, 0, NULL, NULL, 0 },
	{ "check_for_forged_gmail_received_headers", forged_gmail, 0, 0, NULL, NULL, 0 },
	{ "check_for_shifted_date", shifted_date, 2, 2, shifted_check, NULL, 0 },
	{ "check_mailfrom_matches_rcvd", mailfrom_matches_rcvd, 0, 0, mailfrom_check, NULL, 0 },
	{ "have_any_bounce_relays", have_bounce_relays, 0, 0, NULL, NULL, 0 },
	{ "check_welcomelist_bounce_relays", welcomelist_bounce_relays, 0, 0, NULL, NULL, 0 },
	{ "check_whitelist_bounce_relays", welcomelist_bounce_relays, 0, 0, NULL, NULL, 0 },
	{ NULL, NULL, 0, 0, NULL, NULL, 0 }
};

const struct eval_module eval_module_relay = {
	.name = "relay",
	.defs = defs,
	.directive = relay_directive,
	.free_conf = relay_free_conf,
	.pseudo_names = pseudo_names,
	.pseudo = relay_pseudo,
};
