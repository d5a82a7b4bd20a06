"""A small structural model of W3C XML Schema documents, for comparing two schema sets.

Two schemas describe the same wire format when, for every global element, the
tree of element names (with namespace), order, occurrence bounds, attribute
declarations, wildcards and simple-type restrictions (base builtin type and
facets) is the same. Type *names* are not part of the wire format, so they are
dropped: named and anonymous types are expanded in place, complexContent
extensions are flattened into one content model, and groups are inlined.

Types from namespaces listed in ``opaque_namespaces`` are not expanded; they
are compared by QName only (used for ds:SignatureType, whose schema is a
subset on the esx side).

Only the XSD features used by the SGP.02 schemas are supported; anything else
raises ``NotImplementedError`` so that a silent mis-comparison cannot happen.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

from lxml import etree

XS = 'http://www.w3.org/2001/XMLSchema'
UNBOUNDED = -1

_FACETS = {
    'length', 'minLength', 'maxLength', 'pattern', 'enumeration', 'whiteSpace',
    'maxInclusive', 'maxExclusive', 'minInclusive', 'minExclusive',
    'totalDigits', 'fractionDigits',
}
_COMPONENTS = {'element', 'complexType', 'simpleType', 'group', 'attribute', 'attributeGroup'}


def _xs(tag: str) -> str:
    return '{%s}%s' % (XS, tag)


def _resolve(base_dir, location):
    """Absolute file path of a schemaLocation (relative path, absolute path or file: URI)."""
    if location.startswith('file:'):
        return os.path.abspath(unquote(urlparse(location).path))
    return os.path.abspath(os.path.join(base_dir, location))


@dataclass(frozen=True)
class _Ctx:
    """Where a schema node comes from."""
    path: str
    tns: str | None          # effective target namespace (chameleon-adjusted)
    chameleon: bool          # document had no targetNamespace of its own
    element_qualified: bool
    attribute_qualified: bool


class SchemaSet:
    """All components reachable from one schema document.

    ``overrides`` maps absolute file paths to already parsed (and possibly
    modified) root elements, used instead of reading the file. ``pattern_map``
    rewrites every pattern facet value before it is compared (for a documented,
    deliberate difference of notation).
    """

    def __init__(self, path, opaque_namespaces=(), overrides=None, pattern_map=None):
        self.pattern_map = pattern_map or (lambda value: value)
        self.opaque = set(opaque_namespaces)
        self.overrides = {os.path.abspath(k): v for k, v in (overrides or {}).items()}
        self.components = {kind: {} for kind in _COMPONENTS}
        self.source = {}               # (ns, name) of a global element -> file path
        self._loaded = set()
        self._memo = {}
        self._busy = set()
        self._load(os.path.abspath(str(path)), None)

    # ------------------------------------------------------------------ loading

    def _root(self, path):
        if path in self.overrides:
            return self.overrides[path]
        return etree.parse(path).getroot()

    def _load(self, path, chameleon_ns):
        root = self._root(path)
        own_tns = root.get('targetNamespace')
        tns = own_tns if own_tns is not None else chameleon_ns
        key = (path, tns)
        if key in self._loaded:
            return
        self._loaded.add(key)
        ctx = _Ctx(path=path, tns=tns, chameleon=own_tns is None,
                   element_qualified=root.get('elementFormDefault') == 'qualified',
                   attribute_qualified=root.get('attributeFormDefault') == 'qualified')
        base = os.path.dirname(path)
        for child in root:
            if not isinstance(child.tag, str) or child.tag == _xs('annotation'):
                continue
            local = etree.QName(child).localname
            if local == 'include':
                self._load(_resolve(base, child.get('schemaLocation')), tns)
            elif local == 'import':
                loc = child.get('schemaLocation')
                if loc:
                    self._load(_resolve(base, loc), child.get('namespace'))
            elif local in _COMPONENTS:
                qn = (tns or '', child.get('name'))
                table = self.components[local]
                if qn in table and table[qn][1].path != path:
                    raise ValueError('duplicate %s %s in %s and %s' % (local, qn, table[qn][1].path, path))
                table[qn] = (child, ctx)
                if local == 'element':
                    self.source[qn] = path
            else:
                raise NotImplementedError('schema child %s in %s' % (local, path))

    # ---------------------------------------------------------------- helpers

    def _qname(self, node, ctx, value):
        if ':' in value:
            prefix, local = value.split(':', 1)
            ns = node.nsmap.get(prefix)
            if ns is None:
                raise ValueError('unknown prefix %r in %s' % (prefix, ctx.path))
        else:
            local = value
            ns = node.nsmap.get(None)
            if ns is None and ctx.chameleon:
                ns = ctx.tns
        return (ns or '', local)

    @staticmethod
    def _occurs(node):
        mn = int(node.get('minOccurs', '1'))
        mx = node.get('maxOccurs', '1')
        return (mn, UNBOUNDED if mx == 'unbounded' else int(mx))

    @staticmethod
    def _children(node):
        return [c for c in node if isinstance(c.tag, str) and c.tag != _xs('annotation')]

    def global_elements(self, path=None):
        """QNames of global elements (optionally only those defined in ``path``)."""
        path = os.path.abspath(str(path)) if path else None
        return sorted(qn for qn, src in self.source.items() if path is None or src == path)

    # --------------------------------------------------------------- structure

    def element(self, qname):
        """Canonical structure of a global element."""
        node, ctx = self.components['element'][qname]
        return self._element_decl(node, ctx, is_global=True)

    def _element_decl(self, node, ctx, is_global):
        if node.get('ref'):
            ref = self._qname(node, ctx, node.get('ref'))
            gnode, gctx = self.components['element'][ref]
            return self._element_decl(gnode, gctx, is_global=True)
        form = node.get('form')
        qualified = is_global or (form == 'qualified' if form else ctx.element_qualified)
        ns = (ctx.tns or '') if qualified else ''
        if node.get('type'):
            typ = self._type(self._qname(node, ctx, node.get('type')))
        else:
            inline = [c for c in self._children(node) if c.tag in (_xs('complexType'), _xs('simpleType'))]
            if inline:
                typ = self._anon_type(inline[0], ctx)
            else:
                typ = ('builtin', 'anyType')
        return ('element', ns, node.get('name'), typ,
                ('nillable', node.get('nillable', 'false') == 'true'),
                ('default', node.get('default')), ('fixed', node.get('fixed')))

    def _type(self, qname):
        ns, name = qname
        if ns == XS:
            return ('builtin', name)
        if ns in self.opaque:
            return ('opaque-type', ns, name)
        if qname in self._memo:
            return self._memo[qname]
        if qname in self._busy:
            return ('recursive-type', ns, name)
        self._busy.add(qname)
        try:
            if qname in self.components['complexType']:
                node, ctx = self.components['complexType'][qname]
                result = self._complex(node, ctx)
            elif qname in self.components['simpleType']:
                node, ctx = self.components['simpleType'][qname]
                result = self._simple(node, ctx)
            else:
                raise KeyError('type %s not found' % (qname,))
        finally:
            self._busy.discard(qname)
        self._memo[qname] = result
        return result

    def _anon_type(self, node, ctx):
        if node.tag == _xs('complexType'):
            return self._complex(node, ctx)
        return self._simple(node, ctx)

    # simple types

    def _simple(self, node, ctx):
        kids = self._children(node)
        if len(kids) != 1:
            raise NotImplementedError('simpleType shape in %s' % ctx.path)
        body = kids[0]
        local = etree.QName(body).localname
        if local == 'restriction':
            return self._restriction(body, ctx)
        if local == 'list':
            if body.get('itemType'):
                item = self._type(self._qname(body, ctx, body.get('itemType')))
            else:
                item = self._simple(self._children(body)[0], ctx)
            return ('list', item)
        if local == 'union':
            members = [self._type(self._qname(body, ctx, m)) for m in (body.get('memberTypes') or '').split()]
            members += [self._simple(c, ctx) for c in self._children(body)]
            return ('union', tuple(members))
        raise NotImplementedError(local)

    def _restriction(self, body, ctx):
        if body.get('base'):
            base = self._type(self._qname(body, ctx, body.get('base')))
        else:
            base = self._simple([c for c in self._children(body) if c.tag == _xs('simpleType')][0], ctx)
        if base[0] == 'builtin':
            builtin, facets = base[1], {}
        elif base[0] == 'simple':
            builtin, facets = base[1], dict(base[2])
        else:
            raise NotImplementedError('restriction of %r' % (base[0],))
        patterns, enums = [], []
        for f in self._children(body):
            name = etree.QName(f).localname
            if name == 'simpleType':
                continue
            if name not in _FACETS:
                raise NotImplementedError('facet %s' % name)
            if name == 'pattern':
                patterns.append(self.pattern_map(f.get('value')))
            elif name == 'enumeration':
                enums.append(f.get('value'))
            else:
                facets[name] = f.get('value')
        if patterns:
            # patterns of one step are alternatives; patterns of successive steps all apply
            facets['pattern'] = tuple(sorted(set(facets.get('pattern', ())) | {tuple(sorted(patterns))}))
        if enums:
            facets['enumeration'] = tuple(sorted(enums))
        return ('simple', builtin, tuple(sorted(facets.items())))

    # complex types

    def _complex(self, node, ctx):
        mixed = node.get('mixed') == 'true'
        kids = self._children(node)
        cc = [k for k in kids if k.tag == _xs('complexContent')]
        sc = [k for k in kids if k.tag == _xs('simpleContent')]
        if sc:
            der = self._children(sc[0])[0]
            if etree.QName(der).localname != 'extension':
                raise NotImplementedError('simpleContent restriction')
            base = self._type(self._qname(der, ctx, der.get('base')))
            if base[0] == 'simplecontent':
                value, battrs, bany = base[1], base[2], base[3]
            else:
                value, battrs, bany = base, (), None
            attrs, anyattr = self._attributes(der, ctx)
            return ('simplecontent', value, tuple(sorted(battrs + attrs)), anyattr or bany)
        if cc:
            mixed = mixed or cc[0].get('mixed') == 'true'
            der = self._children(cc[0])[0]
            kind = etree.QName(der).localname
            base_q = self._qname(der, ctx, der.get('base'))
            own = self._particle_of(der, ctx)
            attrs, anyattr = self._attributes(der, ctx)
            if kind == 'extension':
                base = self._type(base_q)
                if base[0] != 'complex':
                    raise NotImplementedError('complexContent extension of %r' % (base[0],))
                parts = [p for p in (base[2], own) if p is not None]
                content = _normalize(('sequence', (1, 1), tuple(parts)))
                return ('complex', mixed or base[1], content,
                        tuple(sorted(base[3] + attrs)), anyattr or base[4])
            if base_q == (XS, 'anyType'):
                return ('complex', mixed, _normalize(own), attrs, anyattr)
            raise NotImplementedError('complexContent restriction')
        content = self._particle_of(node, ctx)
        attrs, anyattr = self._attributes(node, ctx)
        return ('complex', mixed, _normalize(content), attrs, anyattr)

    def _particle_of(self, node, ctx):
        for k in self._children(node):
            if etree.QName(k).localname in ('sequence', 'choice', 'all', 'group'):
                return self._particle(k, ctx)
        return None

    def _particle(self, node, ctx):
        local = etree.QName(node).localname
        occurs = self._occurs(node)
        if local in ('sequence', 'choice', 'all'):
            kids = tuple(self._particle(k, ctx) for k in self._children(node))
            return (local, occurs, kids)
        if local == 'element':
            return ('particle', occurs, self._element_decl(node, ctx, is_global=False))
        if local == 'any':
            return ('any', occurs, node.get('namespace', '##any'), node.get('processContents', 'strict'))
        if local == 'group':
            gnode, gctx = self.components['group'][self._qname(node, ctx, node.get('ref'))]
            inner = self._particle_of(gnode, gctx)
            return ('sequence', occurs, (inner,))
        raise NotImplementedError('particle %s' % local)

    def _attributes(self, node, ctx):
        attrs, anyattr = [], None
        for k in self._children(node):
            local = etree.QName(k).localname
            if local == 'attribute':
                attrs.append(self._attribute(k, ctx, is_global=False))
            elif local == 'attributeGroup':
                gnode, gctx = self.components['attributeGroup'][self._qname(k, ctx, k.get('ref'))]
                sub, sub_any = self._attributes(gnode, gctx)
                attrs.extend(sub)
                anyattr = anyattr or sub_any
            elif local == 'anyAttribute':
                anyattr = ('anyAttribute', k.get('namespace', '##any'), k.get('processContents', 'strict'))
        return tuple(sorted(attrs)), anyattr

    def _attribute(self, node, ctx, is_global):
        if node.get('ref'):
            ref = self._qname(node, ctx, node.get('ref'))
            gnode, gctx = self.components['attribute'][ref]
            decl = self._attribute(gnode, gctx, is_global=True)
            return decl[:3] + (node.get('use', 'optional'),) + decl[4:]
        form = node.get('form')
        qualified = is_global or (form == 'qualified' if form else ctx.attribute_qualified)
        ns = (ctx.tns or '') if qualified else ''
        if node.get('type'):
            typ = self._type(self._qname(node, ctx, node.get('type')))
        else:
            inline = [c for c in self._children(node) if c.tag == _xs('simpleType')]
            typ = self._simple(inline[0], ctx) if inline else ('builtin', 'anySimpleType')
        return ('attribute', ns, node.get('name'), node.get('use', 'optional'), typ,
                ('default', node.get('default')), ('fixed', node.get('fixed')))


def _normalize(p):
    """Canonical particle: drop empty groups, splice nested groups of the same kind
    that occur exactly once, and unwrap single-member groups that occur once."""
    if p is None:
        return None
    kind = p[0]
    if kind not in ('sequence', 'choice', 'all'):
        return p
    occurs = p[1]
    out = []
    for child in p[2]:
        child = _normalize(child)
        if child is None:
            continue
        if child[0] == kind and child[1] == (1, 1) and kind != 'all':
            out.extend(child[2])
        else:
            out.append(child)
    if not out:
        return None
    if len(out) == 1 and occurs == (1, 1) and kind != 'all':
        return out[0]
    return (kind, occurs, tuple(out))


def _occ(occurs):
    mn, mx = occurs
    return '[%d..%s]' % (mn, '*' if mx == UNBOUNDED else mx)


_PREFIXES = {
    'http://namespaces.gsma.org/esim-messaging/3': 'rps3:',
    'http://www.w3.org/2000/09/xmldsig#': 'ds:',
    'http://www.w3.org/2005/08/addressing': 'wsa:',
}


def _ns(ns):
    if not ns:
        return ''
    return _PREFIXES.get(ns, '{%s}' % ns)


def _type_line(typ):
    kind = typ[0]
    if kind == 'builtin':
        return 'xs:' + typ[1]
    if kind == 'simple':
        facets = ' '.join('%s=%r' % (k, v) for k, v in typ[2])
        return ('xs:%s %s' % (typ[1], facets)).rstrip()
    if kind == 'list':
        return 'list of ' + _type_line(typ[1])
    if kind == 'union':
        return 'union of (' + ' | '.join(_type_line(m) for m in typ[1]) + ')'
    if kind in ('opaque-type', 'recursive-type'):
        return '%s %s%s' % (kind, _ns(typ[1]), typ[2])
    return None


def _decl_extras(decl):
    extras = [x for x in decl[-3:]
              if len(x) == 2 and x[0] in ('nillable', 'default', 'fixed') and x[1] not in (None, False)]
    return ''.join(' %s=%r' % x for x in extras)


def outline(node, indent=0):
    """Compact, line-oriented description of a structure (for assertion diffs)."""
    pad = '  ' * indent
    kind = node[0]
    if kind == 'element':
        return [pad + '%s%s' % (_ns(node[1]), node[2]) + _decl_extras(node)] + _type_outline(node[3], indent + 1)
    if kind == 'particle':
        decl = node[2]
        head = pad + '%s%s %s%s' % (_ns(decl[1]), decl[2], _occ(node[1]), _decl_extras(decl))
        line = _type_line(decl[3])
        if line is not None:
            return [head + ' : ' + line]
        return [head] + _type_outline(decl[3], indent + 1)
    if kind in ('sequence', 'choice', 'all'):
        lines = [pad + '%s %s' % (kind, _occ(node[1]))]
        for child in node[2]:
            lines += outline(child, indent + 1)
        return lines
    if kind == 'any':
        return [pad + 'any %s namespace=%s process=%s' % (_occ(node[1]), node[2], node[3])]
    raise ValueError(kind)


def _attr_lines(attrs, anyattr, pad):
    lines = []
    for a in attrs:
        lines.append(pad + '@%s%s use=%s : %s%s' % (_ns(a[1]), a[2], a[3], _type_line(a[4]), _decl_extras(a)))
    if anyattr:
        lines.append(pad + '@* namespace=%s process=%s' % anyattr[1:])
    return lines


def _type_outline(typ, indent):
    pad = '  ' * indent
    line = _type_line(typ)
    if line is not None:
        return [pad + line]
    if typ[0] == 'simplecontent':
        return [pad + 'simple content ' + _type_line(typ[1])] + _attr_lines(typ[2], typ[3], pad)
    lines = [pad + ('complex, mixed' if typ[1] else 'complex')]
    lines += _attr_lines(typ[3], typ[4], pad)
    if typ[2] is not None:
        lines += outline(typ[2], indent)
    return lines
