/* regex.c - Perl match operators as SpamAssassin rules write them
 * ("/re/flags", "m{re}flags", "m!re!i") split into a pattern and flags.
 * The pattern text itself is Perl syntax, which PCRE2 reads as is; what
 * Hyperscan refuses is found when compiling (compile.c). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include "rules/rules_int.h"

static char closing_of(char open)
{
	switch (open) {
	case '{': return '}';
	case '(': return ')';
	case '[': return ']';
	case '<': return '>';
	default:  return open;
	}
}

int perl_re_split(const char *s, char **pattern, unsigned *flags, const char **rest)
{
	*pattern = NULL;
	*flags = 0;
	if (*s == 'm' && s[1] && !isalnum((unsigned char)s[1]) && !isspace((unsigned char)s[1])) s++;
	else if (*s != '/') return -1;
	char open = *s, close = closing_of(open);
	const char *b = s + 1, *e = b;
	int nest = 0;
	for (; *e; e++) {
		if (*e == '\\' && e[1]) { e++; continue; }
		if (open != close && *e == open) { nest++; continue; }
		if (*e == close) {
			if (nest) { nest--; continue; }
			break;
		}
	}
	if (*e != close) return -1;
	size_t n = (size_t)(e - b);
	char *pat = malloc(n + 1);
	if (!pat) abort();
	/* an escaped delimiter that is not special in a regex is just the character */
	size_t j = 0;
	for (size_t i = 0; i < n; i++) {
		if (b[i] == '\\' && i + 1 < n && (b[i + 1] == open || b[i + 1] == close) &&
		    !strchr("{}()[]<>.*+?|^$\\", b[i + 1])) {
			pat[j++] = b[++i];
			continue;
		}
		pat[j++] = b[i];
		if (b[i] == '\\' && i + 1 < n) pat[j++] = b[++i];
	}
	pat[j] = '\0';
	const char *f = e + 1;
	unsigned fl = 0;
	for (; isalpha((unsigned char)*f); f++) {
		switch (*f) {
		case 'i': fl |= RE_I; break;
		case 'm': fl |= RE_M; break;
		case 's': fl |= RE_S; break;
		case 'x': fl |= RE_X; break;
		case 'g': case 'o': case 'a': case 'u': case 'l': case 'd': case 'p': break;
		default: free(pat); return -1;
		}
	}
	*pattern = pat;
	*flags = fl;
	*rest = f;
	return 0;
}
